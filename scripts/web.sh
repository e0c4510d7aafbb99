#!/usr/bin/env bash
# The web processes: uvicorn workers serving routerhub.asgi — the gateway (/v1/), the API (/api/v1/)
# and the admin. ROUTERHUB_HOST / ROUTERHUB_PORT, WEB_CONCURRENCY workers (default 2),
# ROUTERHUB_ACCESS_LOG=1 for uvicorn's access log line per request (off: it costs time on every call;
# the application writes its own JSON line per API call, routing/request_log.py).
# --no-proxy-headers: uvicorn would otherwise take the client address from X-Forwarded-For on any
# connection from 127.0.0.1, which every local user can open; the application believes the header
# from ROUTERHUB_TRUSTED_PROXIES only (routing/throttling.py).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -x .venv/bin/uvicorn ]; then UVICORN=.venv/bin/uvicorn; else UVICORN=uvicorn; fi
# Prometheus metrics (/metrics) add up every worker's values from files in one folder; values of an
# earlier run must not count, so a folder chosen here starts empty (run.sh chooses it for web and
# worker together, and empties it itself).
if [ -z "${PROMETHEUS_MULTIPROC_DIR:-}" ]; then
  export PROMETHEUS_MULTIPROC_DIR="$PWD/.run/prometheus"
  rm -rf "$PROMETHEUS_MULTIPROC_DIR"
  mkdir -p -m 700 "$PROMETHEUS_MULTIPROC_DIR"
fi
access_log=--no-access-log
if [ "${ROUTERHUB_ACCESS_LOG:-0}" = "1" ]; then access_log=--access-log; fi
exec "$UVICORN" routerhub.asgi:application \
  --host "${ROUTERHUB_HOST:-127.0.0.1}" --port "${ROUTERHUB_PORT:-8000}" \
  --workers "${WEB_CONCURRENCY:-2}" --loop uvloop --http httptools --lifespan on \
  --backlog 2048 --timeout-keep-alive 30 --timeout-graceful-shutdown 30 --no-proxy-headers "$access_log" "$@"
