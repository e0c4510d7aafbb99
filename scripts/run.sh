#!/usr/bin/env bash
# Run routerhub with the MMLU-Pro demo data: web (uvicorn: the gateway /v1/, the API and the admin),
# Celery worker and beat, and a fake OpenAI-compatible upstream serving the demo LLMs.
# With no DATABASE_URL / REDIS_URL it uses an embedded PostgreSQL + pgvector and an embedded Redis
# (.redis/, asking for the password in .run/redis-password), both from pip packages.
# --no-demo: the service alone on the database as it is (migrated; no demo data, upstream or fitting).
# Ctrl-C, or SIGTERM to the process group, stops everything it started, the embedded servers included.
set -euo pipefail
cd "$(dirname "$0")/.."
DEMO=1
if [ "${1:-}" = "--no-demo" ]; then DEMO=0; fi
scripts/install.sh
PY=.venv/bin/python
export PYTHONUNBUFFERED=1  # progress lines appear as they happen, even when the output is piped
HOST="${ROUTERHUB_HOST:-127.0.0.1}"
PORT="${ROUTERHUB_PORT:-8000}"
# .run holds the demo's admin password and API key, the development secret key and the Redis
# password: private to this user (files 0600, folder 0700).
umask 077
mkdir -p .run
chmod 700 .run
# Development settings (DJANGO_DEBUG unset) accept local host names only; listening elsewhere adds HOST.
case "$HOST" in
  127.0.0.1|localhost|::1|0.0.0.0) ;;
  *) export DJANGO_ALLOWED_HOSTS="${DJANGO_ALLOWED_HOSTS:-localhost,127.0.0.1,[::1],$HOST}" ;;
esac
# One folder for the Prometheus metrics of the web workers and the Celery worker, emptied at each start
# (/metrics adds up what is in it).
export PROMETHEUS_MULTIPROC_DIR="${PROMETHEUS_MULTIPROC_DIR:-$PWD/.run/prometheus}"
rm -rf "$PROMETHEUS_MULTIPROC_DIR"
mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
UPSTREAM_PORT="${ROUTERHUB_DEMO_UPSTREAM_PORT:-8001}"
# The demo upstream listens on loopback, which upstream calls may reach only when it is listed.
export ROUTERHUB_UPSTREAM_ALLOWED_HOSTS="${ROUTERHUB_UPSTREAM_ALLOWED_HOSTS:+$ROUTERHUB_UPSTREAM_ALLOWED_HOSTS,}127.0.0.1"
# The demo upstream also acts as a judge (a stand-in reading the demo data, docs/judges.md): any demo
# LLM can be named; this one judges where a prompt set names no judge of its own.
if [ "$DEMO" = 1 ]; then export ROUTERHUB_JUDGE_LLM="${ROUTERHUB_JUDGE_LLM:-gemini-1.5-pro-002}"; fi

SERVICES=()  # must keep running: one of them ending ends the run (the rest is stopped with them)
descendants() {  # every process started under $1, at any depth, but not the embedded PostgreSQL's keeper
  local child  # (a session of its own, pid = sid: it stops the server itself once its users are gone)
  for child in $(ps -o pid=,sid= --ppid "$1" 2>/dev/null | awk '$1 != $2 {print $1}'); do
    echo "$child"
    descendants "$child"
  done
}
running() {  # those of the given pids still running (an unreaped zombie is not)
  [ $# -gt 0 ] && ps -o pid=,stat= -p "$(IFS=,; echo "$*")" 2>/dev/null | awk '$2 !~ /^Z/ {print $1}'
  return 0
}
cleanup() {
  trap - EXIT INT TERM
  echo "Stopping routerhub ..."
  local pids left
  pids=$(descendants $$)
  # shellcheck disable=SC2086  # one word per pid
  kill -TERM $pids 2>/dev/null || true
  # A graceful stop first (the worker ends its task, uvicorn its requests), then no more waiting: the
  # whole stop stays within 15 s, with time left for the embedded PostgreSQL's shutdown checkpoint
  # (an unfinished task is delivered again later: tasks are acknowledged once done).
  for _ in $(seq 1 30); do
    # shellcheck disable=SC2086
    left=$(running $pids)
    [ -z "$left" ] && break
    sleep 0.2
  done
  if [ -n "$left" ]; then
    echo "Killing what did not stop within 6 s: $(ps -o pid=,comm= -p "$(echo $left | tr ' ' ,)" | tr -s ' \n' ' ')"
    # shellcheck disable=SC2086
    kill -KILL $left 2>/dev/null || true
  fi
  wait 2>/dev/null || true
  # The embedded PostgreSQL stops on its own within a second of its last user
  # (routerhub/embedded_db/keeper.py).
}
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM
trap cleanup EXIT

if [ -z "${CELERY_BROKER_URL:-}${REDIS_URL:-}" ]; then
  REDIS_PORT="${ROUTERHUB_REDIS_PORT:-6399}"
  $PY -m routerhub.embedded redis .redis "$REDIS_PORT" >.run/redis.log 2>&1 &
  SERVICES+=("$!")
  if ! broker="$($PY -m routerhub.embedded redis-url "$REDIS_PORT")"; then
    echo "The embedded Redis did not start on port $REDIS_PORT (ROUTERHUB_REDIS_PORT):" >&2
    tail -5 .run/redis.log >&2
    exit 1
  fi
  export CELERY_BROKER_URL="$broker"
  echo "Embedded Redis on 127.0.0.1:$REDIS_PORT (password in .run/redis-password)"
fi
export CELERY_BROKER_URL="${CELERY_BROKER_URL:-${REDIS_URL:-}}"

# Keep one attachment to the embedded PostgreSQL open for the whole session, so the server is not
# stopped and restarted between the set-up commands below.
$PY -c 'import django, os, signal, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "routerhub.settings")
django.setup()
from django.db import connection
connection.ensure_connection()  # starts the embedded server when DATABASE_URL is unset
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
signal.pause()' &

# Static files (compressed once, which takes a while the first time) are needed only by the
# web process: collect them while the database is set up and the data imported.
$PY manage.py collectstatic --no-input -v 0 >.run/collectstatic.log 2>&1 &
STATIC=$!
echo "Setting up the database (migrate runs the start-up checks, the database's included) ..."
$PY manage.py migrate --no-input
if [ "$DEMO" = 1 ]; then
  $PY manage.py import_routing_data data/mmlu-pro --name mmlu-pro
  # What set-up does is shown as it happens (a private copy goes to .run/demo.txt, mode 0600); the
  # login and key are printed once all is up. Only UniRoute K-means is fitted before the service starts
  # (a quick fit): the other strategies are fitted in the background once it answers (below).
  $PY manage.py setup_demo --dataset mmlu-pro --strategies uniroute_kmeans --base-url "http://$HOST:$PORT" \
    --upstream-url "http://127.0.0.1:$UPSTREAM_PORT/v1" --output .run/demo.txt | sed -u '/^--- /,$d'

  $PY -m routerhub.demo_upstream --data data/mmlu-pro --port "$UPSTREAM_PORT" \
    --latency "${ROUTERHUB_DEMO_LATENCY:-0.3}" --chunk-delay "${ROUTERHUB_DEMO_CHUNK_DELAY:-0.02}" >.run/upstream.log 2>&1 &
  SERVICES+=("$!")
fi

if ! wait "$STATIC"; then cat .run/collectstatic.log >&2; exit 1; fi
# The web first: the printed example needs only it; worker and beat start once it answers, so they
# do not compete with it for the cores while it loads.
echo "Starting the web server (its workers load the embedder) ..."
ROUTERHUB_HOST="$HOST" ROUTERHUB_PORT="$PORT" scripts/web.sh >.run/web.log 2>&1 &
SERVICES+=("$!")
started=$SECONDS
for i in $(seq 1 300); do
  if curl -fsS "http://$HOST:$PORT/admin/login/" >/dev/null 2>&1 \
    && { [ "$DEMO" = 0 ] || curl -fsS "http://127.0.0.1:$UPSTREAM_PORT/v1/models" >/dev/null 2>&1; }; then break; fi
  if (( i % 25 == 0 )); then echo "  web not answering yet, $((SECONDS - started)) s (see .run/web.log)"; fi
  sleep 0.2
done
echo "Starting the Celery worker and beat ..."
.venv/bin/celery -A routerhub worker --loglevel INFO --concurrency 2 >.run/worker.log 2>&1 &
SERVICES+=("$!")
.venv/bin/celery -A routerhub beat --loglevel INFO --pidfile= >.run/beat.log 2>&1 &
SERVICES+=("$!")
echo
echo "routerhub is running: dashboard at http://$HOST:$PORT/  (logs in .run/; Ctrl-C to stop)"
if [ "$DEMO" = 1 ]; then
  # Every other strategy, tuned, so that a request may name any of them; when they are done, the best
  # by cross-validation becomes active (recorded as a Job, progress in .run/fit.log).
  $PY manage.py setup_demo --dataset mmlu-pro --fit-only >.run/fit.log 2>&1 &
  echo "Fitting the other routing strategies in the background (.run/fit.log); the best by cross-validation becomes active when they are done."
  sed -n '/^--- /,$p' .run/demo.txt
fi
wait -n "${SERVICES[@]}"
echo "A routerhub process exited; see .run/*.log" >&2
exit 1
