#!/usr/bin/env bash
# Run routerhub with the MMLU-Pro demo data: web (uvicorn: the gateway /v1/, the API and the admin),
# Celery worker and beat, and a fake OpenAI-compatible upstream serving the demo LLMs.
# With no DATABASE_URL / REDIS_URL it uses an embedded PostgreSQL + pgvector (.pgdata/) and an
# embedded Redis (.redis/), both from pip packages. Ctrl-C stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh
PY=.venv/bin/python
export PYTHONUNBUFFERED=1  # progress lines appear as they happen, even when the output is piped
HOST="${ROUTERHUB_HOST:-127.0.0.1}"
PORT="${ROUTERHUB_PORT:-8000}"
# .run holds the demo's admin password and API key: private to this user (files 0600, folder 0700).
umask 077
mkdir -p .run
chmod 700 .run
# Development settings (DJANGO_DEBUG unset) accept local host names only; listening elsewhere adds HOST.
case "$HOST" in
  127.0.0.1|localhost|::1|0.0.0.0) ;;
  *) export DJANGO_ALLOWED_HOSTS="${DJANGO_ALLOWED_HOSTS:-localhost,127.0.0.1,[::1],$HOST}" ;;
esac
UPSTREAM_PORT="${ROUTERHUB_DEMO_UPSTREAM_PORT:-8001}"
# The demo upstream listens on loopback, which upstream calls may reach only when it is listed.
export ROUTERHUB_UPSTREAM_ALLOWED_HOSTS="${ROUTERHUB_UPSTREAM_ALLOWED_HOSTS:+$ROUTERHUB_UPSTREAM_ALLOWED_HOSTS,}127.0.0.1"

if [ -z "${CELERY_BROKER_URL:-}${REDIS_URL:-}" ]; then
  broker="$($PY -c 'import sys; from pathlib import Path; from routerhub.embedded import start_embedded_redis; print(start_embedded_redis(Path(".redis"), int(sys.argv[1])))' "${ROUTERHUB_REDIS_PORT:-6399}")"
  export CELERY_BROKER_URL="$broker"
  echo "Embedded Redis: $CELERY_BROKER_URL"
fi
export CELERY_BROKER_URL="${CELERY_BROKER_URL:-${REDIS_URL:-}}"

# Keep one attachment to the embedded PostgreSQL open for the whole session, so the server is not
# stopped and restarted between the set-up commands below.
$PY -c 'import django, os, signal, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "routerhub.settings")
django.setup()
from django.db import connection
connection.ensure_connection()  # starts the embedded server when DATABASE_URL is unset
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # exit through atexit: the last user stops PostgreSQL
signal.pause()' &
HOLDER=$!
PIDS=("$HOLDER")
BACKGROUND=()  # one-off jobs: stopped with the rest, but their end is not a failure
cleanup() {
  trap - EXIT INT TERM
  echo "Stopping routerhub ..."
  kill "${PIDS[@]}" "${BACKGROUND[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  if [ -f .redis/redis.pid ] && [ -z "${REDIS_URL:-}" ]; then kill "$(cat .redis/redis.pid)" 2>/dev/null || true; fi
}
trap cleanup EXIT INT TERM

echo "Starting the database (the first run creates .pgdata) and checking it ..."
$PY manage.py check --database default
# Static files (compressed once, ~20 s on a busy machine the first time) are needed only by the
# web process: collect them while the data is imported (after the check, which creates the database).
$PY manage.py collectstatic --no-input -v 0 >.run/collectstatic.log 2>&1 &
STATIC=$!
$PY manage.py migrate --no-input
$PY manage.py import_routing_data data/mmlu-pro --name mmlu-pro
# What set-up does is shown as it happens (a private copy goes to .run/demo.txt, mode 0600); the
# login and key are printed once all is up. Only UniRoute K-means is fitted before the service starts
# (~10 s): the other strategies are fitted in the background once it answers (below).
$PY manage.py setup_demo --dataset mmlu-pro --strategies uniroute_kmeans --base-url "http://$HOST:$PORT" \
  --upstream-url "http://127.0.0.1:$UPSTREAM_PORT/v1" --output .run/demo.txt | sed -u '/^--- /,$d'

$PY -m routerhub.demo_upstream --data data/mmlu-pro --port "$UPSTREAM_PORT" \
  --latency "${ROUTERHUB_DEMO_LATENCY:-0.3}" --chunk-delay "${ROUTERHUB_DEMO_CHUNK_DELAY:-0.02}" >.run/upstream.log 2>&1 &
PIDS+=("$!")

if ! wait "$STATIC"; then cat .run/collectstatic.log >&2; exit 1; fi
# The web first: the printed example needs only it; worker and beat start once it answers, so they
# do not compete with it for the cores while it loads.
echo "Starting the web server (its workers load the embedder) ..."
ROUTERHUB_HOST="$HOST" ROUTERHUB_PORT="$PORT" scripts/web.sh >.run/web.log 2>&1 &
PIDS+=("$!")
started=$SECONDS
for i in $(seq 1 300); do
  if curl -fsS "http://$HOST:$PORT/admin/login/" >/dev/null 2>&1 && curl -fsS "http://127.0.0.1:$UPSTREAM_PORT/v1/models" >/dev/null 2>&1; then break; fi
  if (( i % 25 == 0 )); then echo "  web not answering yet, $((SECONDS - started)) s (see .run/web.log)"; fi
  sleep 0.2
done
echo "Starting the Celery worker and beat ..."
.venv/bin/celery -A routerhub worker --loglevel INFO --concurrency 2 >.run/worker.log 2>&1 &
PIDS+=("$!")
.venv/bin/celery -A routerhub beat --loglevel INFO --pidfile= >.run/beat.log 2>&1 &
PIDS+=("$!")
# Every other strategy, tuned, so that a request may name any of them; when they are done, the best
# by cross-validation becomes active (recorded as a Job, progress in .run/fit.log).
$PY manage.py setup_demo --dataset mmlu-pro --fit-only >.run/fit.log 2>&1 &
BACKGROUND+=("$!")
echo
echo "routerhub is running: dashboard at http://$HOST:$PORT/  (logs in .run/; Ctrl-C to stop)"
echo "Fitting the other routing strategies in the background (.run/fit.log); the best by cross-validation becomes active when they are done."
cat .run/demo.txt | sed -n '/^--- /,$p'
wait -n "${PIDS[@]:1}"
echo "A routerhub process exited; see .run/*.log" >&2
exit 1
