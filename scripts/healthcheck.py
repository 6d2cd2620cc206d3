"""Container healthchecks, in Python because the slim image has no curl.

- ``healthcheck.py web``: ``GET /health`` on this container's ``PORT`` answers 200 within 2 s.
- ``healthcheck.py worker``: Redis answers, and an RQ worker started on this host (container) has sent a
  heartbeat within the last 120 s (RQ beats well inside that while idle or busy).

Exit status 0 means healthy. Reads only the environment, so it stays cheap: no settings object, no app import.
"""

from __future__ import annotations

import os
import socket
import sys
import urllib.request
from datetime import UTC, datetime


def web() -> int:
    url = f"http://127.0.0.1:{os.environ.get('PORT', '9090')}/health"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return 0 if response.status == 200 else 1
    except OSError as exc:
        print(f"web unhealthy: {exc}", file=sys.stderr)
        return 1


def worker() -> int:
    import redis
    from rq import Worker

    url = os.environ.get("REDIS_URL", "redis://localhost:6379/0")
    try:
        connection = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        connection.ping()
        here = socket.gethostname()
        now = datetime.now(UTC)
        for found in Worker.all(connection=connection):
            beat = found.last_heartbeat
            if found.hostname == here and beat is not None:
                beat = beat if beat.tzinfo else beat.replace(tzinfo=UTC)
                if (now - beat).total_seconds() < 120:
                    return 0
    except redis.RedisError as exc:
        print(f"worker unhealthy: redis: {exc.__class__.__name__}", file=sys.stderr)
        return 1
    print(f"worker unhealthy: no RQ worker with a recent heartbeat on {socket.gethostname()}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    checks = {"web": web, "worker": worker}
    if len(sys.argv) != 2 or sys.argv[1] not in checks:
        sys.exit("usage: healthcheck.py web|worker")
    sys.exit(checks[sys.argv[1]]())
