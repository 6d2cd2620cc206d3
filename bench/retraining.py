"""Retraining-path benchmarks: hot-swap latency across 4 gunicorn workers, and webhook answer time under load.

    python -m bench.retraining                  # both, 50 swaps, 20 concurrent annotation events x 10 rounds
    python -m bench.retraining --swaps 20 --rounds 5

Everything is a real process on loopback: redis-server and gunicorn (4 gthread workers, the production app with
each answer tagged by its worker's pid, ``testkit.pidapp``). No LLM is called:
``/setup`` and ``/webhook`` never call one.

**Hot swap.** The bench promotes a new policy (the store's compare-and-set, as a training job does) while 8 client
threads keep calling ``/setup`` on fresh connections (so requests spread over the workers). For each of the 4
workers it notes the first answer carrying the new version; a swap's latency is the time from the promotion
returning to the last of the 4 workers doing so. It also counts *stale* answers: an old version in reply to a
request sent after the promotion returned. Workers read the live version from Redis on every request, so that
count should be 0 and the latency is bounded by how soon traffic reaches every worker.

**Webhooks.** 20 threads post ``ANNOTATION_CREATED`` at once (``RETRAIN_EVERY_N=10``: every tenth queues a run), for
several rounds; the answer time is measured per request, client side, over keep-alive connections.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.harness import percentile, redis_server  # noqa: E402
from optimizer.runtime.services import Services  # noqa: E402
from optimizer.serving.policy import Policy  # noqa: E402
from optimizer.settings import Settings  # noqa: E402
from testkit.backendprocess import BackendProcess  # noqa: E402
from testkit.constants import SUPPORT_CONFIG  # noqa: E402
from testkit.lspayloads import uid, webhook  # noqa: E402

PROJECT_ID = 42
UNUSED_LLM = "http://127.0.0.1:9/v1"  # /setup and /webhook never call the LLM


def _settings(redis_url: str) -> Settings:
    return Settings(
        _env_file=None,
        redis_url=redis_url,
        redis_namespace="bench" + uuid.uuid4().hex[:8],
        rq_queue="bench-" + uuid.uuid4().hex[:8],
        llm_base_url=UNUSED_LLM,
        llm_model="none",
        default_prompt="Label the conversation.",
        retrain_every_n=10,
    )


def _backend(settings: Settings) -> BackendProcess:
    """gunicorn with 4 workers, the production app with each answer tagged by its worker's pid."""
    env = {
        "DEFAULT_PROMPT": settings.default_prompt,
        "RQ_QUEUE": settings.rq_queue,
        "RETRAIN_EVERY_N": str(settings.retrain_every_n),
        "LOG_LEVEL": "WARNING",
    }
    return BackendProcess(
        redis_url=settings.redis_url,
        llm_base_url=UNUSED_LLM,
        namespace=settings.redis_namespace,
        workers=4,
        threads=4,
        app="testkit.pidapp:app",
        env=env,
    )


class Conn:
    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.host, self.port = host, int(port)
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)

    def post(self, path: str, body: dict, fresh: bool = False) -> tuple[int, dict, dict]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30) if fresh else self.conn
        data = json.dumps(body).encode()
        conn.request("POST", path, body=data, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        payload = json.loads(response.read())
        if fresh:
            conn.close()
        return response.status, dict(response.getheaders()), payload


class Swap:
    """One promotion observed by ``pollers`` threads calling ``/setup`` on fresh connections."""

    def __init__(self, url: str, body: dict, new_version: str, pollers: int) -> None:
        self.url, self.body, self.new_version = url, body, new_version
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.promoted_at: float | None = None
        self.first_new: dict[str, float] = {}
        self.stale = 0
        self.request_ms: list[float] = []
        self.threads = [threading.Thread(target=self._poll, daemon=True) for _ in range(pollers)]

    def _poll(self) -> None:
        conn = Conn(self.url)
        while not self.stop.is_set():
            sent = time.perf_counter()
            _, headers, payload = conn.post("/setup", self.body, fresh=True)
            got = time.perf_counter()
            with self.lock:
                self.request_ms.append((got - sent) * 1000)
                if self.promoted_at is None:
                    continue
                if payload.get("model_version") == self.new_version:
                    self.first_new.setdefault(headers.get("X-Worker-Pid"), got)
                elif sent > self.promoted_at:
                    self.stale += 1

    def run(self, promote) -> float:
        """Start traffic, promote, wait until all 4 workers answered the new version; returns the latency in ms."""
        for t in self.threads:
            t.start()
        time.sleep(0.05)  # traffic is flowing before the promotion
        promote()
        with self.lock:
            self.promoted_at = time.perf_counter()
        deadline = self.promoted_at + 10
        while time.perf_counter() < deadline:
            with self.lock:
                if len(self.first_new) >= 4:
                    break
            time.sleep(0.001)
        self.stop.set()
        for t in self.threads:
            t.join()
        if len(self.first_new) < 4:
            raise RuntimeError(f"only {len(self.first_new)} workers served the new version within 10 s")
        return (max(self.first_new.values()) - self.promoted_at) * 1000


def hot_swap(url: str, services: Services, swaps: int, pollers: int = 8) -> dict:
    project = uid(PROJECT_ID)
    body = {"project": project, "schema": SUPPORT_CONFIG}
    conn, seen = Conn(url), set()
    while len(seen) < 4:  # every worker warm (first /setup parses a config: imports the SDK) before timing
        seen.add(conn.post("/setup", body, fresh=True)[1].get("X-Worker-Pid"))
    live = services.store.current(project).version
    latencies, stale, request_ms = [], 0, []
    for n in range(swaps):
        policy = Policy(f"Label the conversation. Revision {n} {uuid.uuid4().hex[:6]}.")
        swap = Swap(url, body, policy.version, pollers)

        def promote(policy=policy, parent=live, n=n):
            result = services.store.promote(project, policy, parent, job=f"bench-{n}")
            if not result.ok:
                raise RuntimeError(f"promotion refused: {result.status}")

        latencies.append(swap.run(promote))
        stale += swap.stale
        request_ms += swap.request_ms
        live = policy.version
    return {
        "swaps": swaps,
        "workers": 4,
        "swap_to_all_workers_ms_median": round(statistics.median(latencies), 2),
        "swap_to_all_workers_ms_max": round(max(latencies), 2),
        "stale_answers_after_promotion": stale,
        "setup_requests": len(request_ms),
        "setup_request_ms_median": round(statistics.median(request_ms), 2),
    }


def webhooks(url: str, concurrency: int, rounds: int) -> dict:
    conns = [Conn(url) for _ in range(concurrency)]
    payload = webhook("ANNOTATION_CREATED", PROJECT_ID + 1, SUPPORT_CONFIG)
    for c in conns:  # warm every keep-alive connection (and the workers' imports) first
        c.post("/webhook", payload)
    alone = []  # the same event with nothing else in flight: the baseline the concurrent figures compare to
    for _ in range(50):
        started = time.perf_counter()
        conns[0].post("/webhook", payload)
        alone.append((time.perf_counter() - started) * 1000)
    timings, statuses = [], {}
    barrier = threading.Barrier(concurrency)

    def one(c: Conn) -> tuple[float, str]:
        barrier.wait()
        started = time.perf_counter()
        status, _, body = c.post("/webhook", payload)
        elapsed = (time.perf_counter() - started) * 1000
        return elapsed, f"{status} {body.get('status')}"

    with ThreadPoolExecutor(concurrency) as pool:
        for _ in range(rounds):
            for elapsed, status in pool.map(one, conns):
                timings.append(elapsed)
                statuses[status] = statuses.get(status, 0) + 1
    return {
        "concurrency": concurrency,
        "events": len(timings),
        "alone_answer_ms_median": round(statistics.median(alone), 2),
        "answer_ms_median": round(statistics.median(timings), 2),
        "answer_ms_p95": round(percentile(timings, 95), 2),
        "answer_ms_max": round(max(timings), 2),
        "answers": statuses,
    }


def retraining(redis_url: str, swaps: int = 50, concurrency: int = 20, rounds: int = 10) -> dict:
    """Both measurements against one gunicorn backend (``make bench`` runs this as R1 and R2)."""
    settings = _settings(redis_url)
    backend = _backend(settings).start()
    try:
        return {
            "hot_swap": hot_swap(backend.url, Services(settings), swaps),
            "webhooks": webhooks(backend.url, concurrency, rounds),
        }
    finally:
        backend.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.retraining", description=__doc__.split("\n\n")[0])
    parser.add_argument("--swaps", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "retraining.json")
    args = parser.parse_args(argv)
    machine = {"cpus": os.cpu_count(), "load_before": os.getloadavg()}
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    with redis_server() as redis:
        results = retraining(redis.url, args.swaps, args.concurrency, args.rounds)
    results = {"machine": {**machine, "load_after": os.getloadavg()}, "started": started, **results}
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    swap, hooks = results["hot_swap"], results["webhooks"]
    print(json.dumps(results, indent=2))
    print(
        f"\nhot swap, 4 workers, {swap['swaps']} swaps: promotion -> every worker on the new version "
        f"median {swap['swap_to_all_workers_ms_median']} ms, max {swap['swap_to_all_workers_ms_max']} ms; "
        f"stale answers after promotion: {swap['stale_answers_after_promotion']} of {swap['setup_requests']}"
    )
    print(
        f"webhooks, {hooks['concurrency']} concurrent ANNOTATION_CREATED x {args.rounds}: answer median "
        f"{hooks['answer_ms_median']} ms, p95 {hooks['answer_ms_p95']} ms, max {hooks['answer_ms_max']} ms "
        f"(one at a time: median {hooks['alone_answer_ms_median']} ms, "
        f"x{hooks['answer_ms_median'] / hooks['alone_answer_ms_median']:.1f} under load)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
