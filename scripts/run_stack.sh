#!/usr/bin/env bash
# Run the whole stack in the foreground: Redis (started if REDIS_URL is not reachable), the embedded LLM server
# (when EMBEDDED_LLM=1), one RQ worker for both queues (training first, then bulk) and the gunicorn web service on
# PORT. Ctrl-C stops what this script started.
# Logs and the Redis data it starts live in STACK_VAR (default var/, relative to the repo); tests/test_readme_stack.py
# runs `make run` with its own STACK_VAR and free ports, so it never meets a stack someone else is running.
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
export STACK_VAR=${STACK_VAR:-var}
mkdir -p "$STACK_VAR/log"

PIDS=()
REDIS_PIDFILE=$STACK_VAR/redis/redis.pid
cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  # Redis last, once nothing uses it. It is a daemon, not a child: its pid file names the server holding our data,
  # also after a restart (a pid noted at start would miss a Redis restarted since, and leave it running).
  if [ "${STOP_REDIS:-0}" = 1 ] && [ -f "$REDIS_PIDFILE" ]; then kill "$(cat "$REDIS_PIDFILE")" 2>/dev/null || true; fi
}
trap cleanup EXIT INT TERM

.venv/bin/python -c "from optimizer.settings import load_settings; load_settings()"  # fail fast on bad config
had_pidfile=0; [ -f "$REDIS_PIDFILE" ] && had_pidfile=1
scripts/ensure_redis.sh
if [ "$had_pidfile" = 0 ] && [ -f "$REDIS_PIDFILE" ]; then
  STOP_REDIS=1  # we started it: stop it with the rest (SIGTERM; the AOF keeps the data)
fi

if [ "${EMBEDDED_LLM:-1}" = "1" ]; then
  LLM_PORT=${LLM_PORT:-8081}
  export LLM_BASE_URL=${LLM_BASE_URL:-http://127.0.0.1:$LLM_PORT/v1}  # .env leaves it unset for docker compose
  if ! curl -fsS "http://127.0.0.1:$LLM_PORT/v1/models" >/dev/null 2>&1; then
    echo "llm: starting llama.cpp server (SmolLM2-135M) on port $LLM_PORT (log: $STACK_VAR/log/llm.log)"
    scripts/llm_server.sh "$LLM_PORT" >"$STACK_VAR/log/llm.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 1 120); do curl -fsS "http://127.0.0.1:$LLM_PORT/v1/models" >/dev/null 2>&1 && break; sleep 0.5; done
    curl -fsS "http://127.0.0.1:$LLM_PORT/v1/models" >/dev/null || { echo "llm: server did not start" >&2; exit 1; }
  fi
fi

# The RQ worker is restarted when it fails (killed, out of memory, Redis restarted under it: rq 2 quits on a dropped
# connection), as a service manager or compose's restart policy would; its unfinished jobs are recovered by the next
# run (docs/training.md, "Resumable"). A clean exit (Ctrl-C reaches the worker too) ends the loop, and a SIGTERM to the loop
# stops the worker with it, so Ctrl-C still leaves nothing behind.
supervise() {
  local child="" status
  trap '[ -n "$child" ] && kill "$child" 2>/dev/null; wait 2>/dev/null; exit 0' TERM
  while true; do
    "$@" &
    child=$!
    wait "$child" && status=0 || status=$?
    [ "$status" = 0 ] && exit 0
    echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) run_stack: '$*' exited with status $status; restarting it in 2 s" >&2
    sleep 2 &
    wait $! || true
  done
}

QUEUE=${RQ_QUEUE:-lsml-train}
echo "worker: rq worker on queues $QUEUE then ${RQ_BULK_QUEUE:-$QUEUE-bulk} (training first), restarted if it dies (log: $STACK_VAR/log/worker.log)"
supervise .venv/bin/python -m optimizer worker --queues train,bulk >"$STACK_VAR/log/worker.log" 2>&1 &
PIDS+=($!)

echo "web: http://0.0.0.0:${PORT:-9090} (${WORKERS:-2} workers x ${THREADS:-8} threads)"
# gunicorn.conf.py (read from this directory) takes PORT/WORKERS/THREADS from the validated settings, shares one
# /metrics view across workers, and leaves request logging to the app (JSON lines with request ids).
.venv/bin/gunicorn "_wsgi:app" &
PIDS+=($!)
wait -n
