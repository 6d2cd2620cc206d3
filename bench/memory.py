"""P6: resident memory of a gunicorn web worker and of an RQ worker, at rest and after 1,000 and 2,000 predictions.

Growth is judged between 1,000 and 2,000 predictions: the first thousand includes one-off warm-up (lazy imports,
connection pools, caches that fill once); a leak shows as growth after that.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import redis
from rq import Queue

from testkit.backendprocess import ROOT

from .harness import Client, backend, backend_env, fake_llm, rss_mb
from .workload import predict_body

BATCH = 25


def _web(redis_url: str, llm_url: str) -> dict:
    env = backend_env(redis_url, llm_url, REDIS_NAMESPACE="p6web")
    out = {}
    with backend(env) as server:
        (worker,) = server.workers()
        time.sleep(0.5)
        out["rest_mb"] = rss_mb(worker)
        client = Client(server.url)
        done = 0
        for mark in (1000, 2000):
            while done < mark:
                status, _ = client.request("POST", "/predict", predict_body(BATCH, offset=done))
                if status != 200:
                    raise RuntimeError(f"/predict answered {status}")
                done += BATCH
            out[f"after_{mark}_mb"] = rss_mb(worker)
        client.close()
    out["growth_mb"] = out["after_2000_mb"] - out["after_1000_mb"]
    return out


def worker_command(queue: str, redis_url: str) -> tuple[list[str], str]:
    """h3's ``python -m optimizer worker`` when present, else RQ's own worker importing the optimizer."""
    if (ROOT / "optimizer" / "__main__.py").exists():
        return [sys.executable, "-m", "optimizer", "worker"], "python -m optimizer worker"
    rq = os.path.join(os.path.dirname(sys.executable), "rq")
    return [rq, "worker", "--url", redis_url, queue], "rq worker (optimizer/__main__.py absent)"


def _worker(redis_url: str, llm_url: str, per_job: int = 100) -> dict:
    queue_name = "bench-p6"
    env = {**os.environ, **backend_env(redis_url, llm_url, REDIS_NAMESPACE="p6worker", RQ_QUEUE=queue_name),
           "PYTHONPATH": str(ROOT)}  # fmt: skip
    command, label = worker_command(queue_name, redis_url)
    connection = redis.Redis.from_url(redis_url)
    queue = Queue(queue_name, connection=connection)
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out: dict = {"command": label}
    try:
        time.sleep(2.0)  # let it start and register
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited with {proc.returncode}")
        out["rest_mb"] = rss_mb(proc.pid)
        done, reports = 0, []
        for mark in (1000, 2000):
            jobs = []
            while done < mark:
                jobs.append(queue.enqueue("bench.jobs.predict_texts", per_job, done, job_timeout=600))
                done += per_job
            reports += _wait(jobs)
            out[f"after_{mark}_mb"] = rss_mb(proc.pid)
            out[f"job_peak_after_{mark}_mb"] = max(r["peak_mb"] for r in reports)
        out["forks_per_job"] = len({r["pid"] for r in reports}) > 1 or reports[0]["pid"] != proc.pid
        out["failed_predictions"] = sum(r["failed"] for r in reports)
    finally:
        proc.terminate()
        proc.wait(20)
        connection.close()
    out["growth_mb"] = out["after_2000_mb"] - out["after_1000_mb"]
    # What "the worker's memory" is: the worker process itself, or its job process when it forks one per job.
    out["worst_mb"] = max(out["after_2000_mb"], out["job_peak_after_2000_mb"])
    return out


def _wait(jobs, timeout: float = 600) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        statuses = [job.get_status(refresh=True) for job in jobs]
        if any(s == "failed" for s in statuses):
            raise RuntimeError("a benchmark job failed")
        if all(s == "finished" for s in statuses):
            return [job.return_value() for job in jobs]
        time.sleep(0.2)
    raise RuntimeError("benchmark jobs did not finish")


def p6(redis_url: str) -> dict:
    with fake_llm(0.0) as llm_url:
        return {"web": _web(redis_url, llm_url), "worker": _worker(redis_url, llm_url)}
