"""scripts/healthcheck.py, the containers' HEALTHCHECK, against a real gunicorn and a real RQ worker."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import redis
from rq import Worker

from testkit.backendprocess import ROOT, BackendProcess
from testkit.redisserver import RedisServer, free_port

SCRIPT = str(ROOT / "scripts" / "healthcheck.py")


def check(kind: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, SCRIPT, kind], env={**os.environ, **env}, capture_output=True, text=True, timeout=30
    )


def test_web_healthy_only_when_health_answers(redis_server, fake_llm, namespace):
    server = BackendProcess(redis_url=redis_server.url, llm_base_url=fake_llm.base_url, namespace=namespace, workers=1)
    try:
        server.start()
        assert check("web", PORT=str(server.port)).returncode == 0
    finally:
        server.cleanup()
    dead = check("web", PORT=str(free_port()))
    assert dead.returncode == 1 and "web unhealthy" in dead.stderr


def test_worker_healthy_only_while_an_rq_worker_beats_on_this_host(namespace):
    redis_server = RedisServer().start()  # its own: other tests' workers must not count
    assert check("worker", REDIS_URL=redis_server.url).returncode == 1  # no worker yet
    rq = os.path.join(os.path.dirname(sys.executable), "rq")
    worker = subprocess.Popen([rq, "worker", "--url", redis_server.url, f"q-{namespace}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    connection = redis.Redis.from_url(redis_server.url)
    try:
        deadline = time.monotonic() + 20
        while not any(f"q-{namespace}" in w.queue_names() for w in Worker.all(connection=connection)):
            assert time.monotonic() < deadline, "rq worker did not register"
            time.sleep(0.2)
        assert check("worker", REDIS_URL=redis_server.url).returncode == 0
    finally:
        worker.terminate()
        worker.wait(20)
        connection.close()
        redis_server.cleanup()
    gone = check("worker", REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    assert gone.returncode == 1 and "redis" in gone.stderr
