#!/usr/bin/env bash
# Run routerhub with the MMLU-Pro demo data: web (gunicorn), Celery worker and beat.
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
cleanup() {
  trap - EXIT INT TERM
  echo "Stopping routerhub ..."
  kill "${PIDS[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  if [ -f .redis/redis.pid ] && [ -z "${REDIS_URL:-}" ]; then kill "$(cat .redis/redis.pid)" 2>/dev/null || true; fi
}
trap cleanup EXIT INT TERM

$PY manage.py check --database default
$PY manage.py migrate --no-input
$PY manage.py collectstatic --no-input -v 0
$PY manage.py import_routing_data data/mmlu-pro --name mmlu-pro
$PY manage.py setup_demo --dataset mmlu-pro --base-url "http://$HOST:$PORT" --output .run/demo.txt >/dev/null
sed '/^--- /,$d' .run/demo.txt  # what set-up did; the login and key are printed once all is up

.venv/bin/celery -A routerhub worker --loglevel INFO --concurrency 2 >.run/worker.log 2>&1 &
PIDS+=("$!")
.venv/bin/celery -A routerhub beat --loglevel INFO --pidfile= >.run/beat.log 2>&1 &
PIDS+=("$!")
.venv/bin/gunicorn routerhub.wsgi --bind "$HOST:$PORT" --workers "${WEB_CONCURRENCY:-2}" --access-logfile .run/access.log >.run/web.log 2>&1 &
PIDS+=("$!")

for _ in $(seq 1 100); do
  if curl -fsS "http://$HOST:$PORT/admin/login/" >/dev/null 2>&1; then break; fi
  sleep 0.2
done
echo
echo "routerhub is running: dashboard at http://$HOST:$PORT/  (logs in .run/; Ctrl-C to stop)"
cat .run/demo.txt | sed -n '/^--- /,$p'
wait -n "${PIDS[@]:1}"
echo "A routerhub process exited; see .run/*.log" >&2
exit 1
