#!/usr/bin/env bash
# Run the whole stack in the foreground: Redis (started if REDIS_URL is not reachable), the embedded LLM server
# (when EMBEDDED_LLM=1), one RQ worker for both queues (training first, then bulk) and the gunicorn web service on
# PORT. Ctrl-C stops what this script started.
set -euo pipefail
cd "$(dirname "$0")/.."
# Same precedence as the app's settings: the environment wins over .env.local, which wins over .env.
load_env() {
  local line key
  while IFS= read -r line || [ -n "$line" ]; do
    case "$line" in ''|'#'*) continue ;; esac
    key=${line%%=*}
    [ -z "${!key+x}" ] && export "$key=${line#*=}"
  done <"$1"
}
[ -f .env.local ] && load_env .env.local
[ -f .env ] && load_env .env
export PYTHONUNBUFFERED=1
mkdir -p var/log

PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

.venv/bin/python -c "from optimizer.settings import load_settings; load_settings()"  # fail fast on bad config
REDIS_PIDFILE=var/redis/redis.pid
had_pidfile=0; [ -f "$REDIS_PIDFILE" ] && had_pidfile=1
scripts/ensure_redis.sh
if [ "$had_pidfile" = 0 ] && [ -f "$REDIS_PIDFILE" ]; then
  PIDS+=("$(cat "$REDIS_PIDFILE")")  # we started it: stop it with the rest (SIGTERM; the AOF keeps the data)
fi

if [ "${EMBEDDED_LLM:-1}" = "1" ]; then
  LLM_PORT=${LLM_PORT:-8081}
  export LLM_BASE_URL=${LLM_BASE_URL:-http://127.0.0.1:$LLM_PORT/v1}  # .env leaves it unset for docker compose
  if ! curl -fsS "http://127.0.0.1:$LLM_PORT/v1/models" >/dev/null 2>&1; then
    echo "llm: starting llama.cpp server (SmolLM2-135M) on port $LLM_PORT (log: var/log/llm.log)"
    scripts/llm_server.sh "$LLM_PORT" >var/log/llm.log 2>&1 &
    PIDS+=($!)
    for _ in $(seq 1 120); do curl -fsS "http://127.0.0.1:$LLM_PORT/v1/models" >/dev/null 2>&1 && break; sleep 0.5; done
    curl -fsS "http://127.0.0.1:$LLM_PORT/v1/models" >/dev/null || { echo "llm: server did not start" >&2; exit 1; }
  fi
fi

QUEUE=${RQ_QUEUE:-lsml-train}
echo "worker: rq worker on queues $QUEUE then ${RQ_BULK_QUEUE:-$QUEUE-bulk} (training first; log: var/log/worker.log)"
.venv/bin/python -m optimizer worker --queues train,bulk >var/log/worker.log 2>&1 &
PIDS+=($!)

echo "web: http://0.0.0.0:${PORT:-9090} (${WORKERS:-2} workers x ${THREADS:-8} threads)"
# gunicorn.conf.py (read from this directory) takes PORT/WORKERS/THREADS from the validated settings, shares one
# /metrics view across workers, and leaves request logging to the app (JSON lines with request ids).
.venv/bin/gunicorn "_wsgi:app" &
PIDS+=($!)
wait -n
