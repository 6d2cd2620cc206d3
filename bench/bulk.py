"""Bulk pre-annotation, its queues and retries, and the stack-wide LLM limit (issues 10 and 20): B1, B2-B5.

    python -m bench.bulk --only B1                  # 1,000 tasks with 1, 2 and 4 RQ workers
    python -m bench.bulk --only B1 --tasks 10000 --workers 1
    python -m bench.bulk --only B4                  # a 10,000-task run queued, then START_TRAINING
    python -m bench.bulk --only B5                  # one chunk's import refused three times
    python -m bench.bulk --only B2,B3               # need the embedded model

- **B1**: the fake LLM answering in 200 ms, ``LLM_GLOBAL_CONCURRENCY=16``, 1,000 tasks with 1, 2 and 4 RQ workers
  (or ``--tasks``/``--workers``): seconds from queueing the run until every task's prediction is in (the scripted)
  Label Studio, against the ideal tasks / 16 x 0.2 s (12.5 s for 1,000), and each worker's peak RSS (VmHWM; the plan
  runs inside the worker, in one of its bulk threads, so this is the plan's and the chunks' peak together).
- **B2**: the embedded SmolLM2, long tasks with three controls: seconds until every task is in Label Studio through
  a bulk run with one RQ worker, and its tasks per second beside the raw llama.cpp server sent the very same
  requests (built by the backend's own code) with the same number in flight.
- **B3**: the latency of a single-task ``/predict`` right after a batch that ran into its deadline, with the
  deadline reaching every LLM call (now) and without (before: the predictor stopped waiting, but its calls ran on
  until ``LLM_TIMEOUT``). "Before" is the same code with the deadline withheld from the LLM calls.
- **B4**: a 10,000-task run queued on one worker listening to both queues (as ``make run`` starts it), then a
  training trigger: seconds until the training job starts; then the bulk run is cancelled, and the seconds until
  it stopped are printed too.
- **B5**: Label Studio answers 500 to one chunk's import three times (the chunk's own three attempts), then
  recovers: RQ retries the chunk after ``BULK_RETRY_BACKOFF``; every task ends posted once, with nobody involved.

Every part is a real process on loopback (redis-server, the fake LLM, llama.cpp, RQ workers) except the scripted
Label Studio, an in-process HTTP server (``testkit/fakels.py``) that stores what the workers post and answers the
Data Manager filters the plan and the chunks send.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import deque
from contextlib import ExitStack
from pathlib import Path

from optimizer.jobs.queue import JobQueue
from testkit.backendprocess import ROOT
from testkit.constants import THREE_CONTROLS_CONFIG
from testkit.fakels import FakeLabelStudio, PostFault

from .harness import DirectLLM, fake_llm, llama_server, llm_bodies, median, redis_server

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "bulk.json"
PROJECT = "1.1700000000"
EMAIL = (
    "Hello support team, I am writing again about order {i}. The invoice I received charges me twice for the same "
    "subscription, and the parcel that was due last Monday has still not arrived; the tracking page has said "
    "'in transit' for nine days. I asked for a refund through the form and nobody answered. If this is not solved "
    "this week I will return everything and close my account. Please tell me what happened to my payment, when "
    "the parcel will arrive, and how I get my money back. "
)


def _tasks(n: int, long: bool) -> list[dict]:
    words = ["billing", "shipping", "returns"]
    return [
        {"id": i + 1, "data": {"text": (EMAIL * 4).format(i=i) if long else f"Ticket {i} about {words[i % 3]}."}}
        for i in range(n)
    ]


def _settings(redis_url: str, llm_url: str, ls: FakeLabelStudio, namespace: str, **extra):
    from optimizer.settings import Settings

    level = os.environ.get("BENCH_LOG_LEVEL", "WARNING")
    values = dict(redis_url=redis_url, redis_namespace=namespace, llm_base_url=llm_url, llm_model="fake",
                  llm_provider="openai", label_studio_url=ls.url, label_studio_api_key=ls.token, rq_queue=namespace,
                  log_level=level, default_prompt="Label the input.", **extra)  # fmt: skip
    return Settings(_env_file=None, **values)


def _env(settings) -> dict[str, str]:
    from testkit.backendprocess import settings_env_names

    names = settings_env_names()
    env = {k: v for k, v in os.environ.items() if k not in names}
    for name, value in settings.model_dump().items():
        if value is None or value == "":
            continue  # unset: an empty PROMETHEUS_MULTIPROC_DIR would mean "the working directory" to prometheus
        value = value.get_secret_value() if hasattr(value, "get_secret_value") else value
        if isinstance(value, dict):
            value = json.dumps(value)
        env[name.upper()] = ("1" if value else "0") if isinstance(value, bool) else str(value)
    env["PYTHONPATH"] = str(ROOT)
    return env


def _peak_rss_mb(pid: int) -> float | None:
    """The process's peak resident set (VmHWM) in MiB; None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _workers(stack: ExitStack, settings, n: int, log: Path) -> list[subprocess.Popen]:
    env = _env(settings)
    procs = []
    for i in range(n):
        out = open(log.with_suffix(f".{i}.log"), "w")  # noqa: SIM115  (closed by the stack)
        stack.callback(out.close)
        proc = subprocess.Popen([sys.executable, "-m", "optimizer", "worker", "--name", f"bench-{i}-{os.getpid()}"],
                                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
        stack.callback(lambda p=proc: (p.terminate(), p.wait(30)))
        procs.append(proc)
    return procs


def _wait_for_workers(services, n: int) -> None:
    from rq import Worker

    deadline = time.monotonic() + 120
    while Worker.count(connection=services.rq_redis, queue=JobQueue(services).bulk_queue) < n:
        if time.monotonic() > deadline:
            raise RuntimeError("RQ workers did not start")
        time.sleep(0.1)


class Stack:
    """Redis namespace, scripted Label Studio, settings and N RQ worker processes for one measured run."""

    def __init__(self, stack: ExitStack, redis_url: str, llm_url: str, tasks: list[dict], workers: int,
                 namespace: str, **extra) -> None:  # fmt: skip
        from optimizer.runtime.services import Services

        self.ls = stack.enter_context(FakeLabelStudio(THREE_CONTROLS_CONFIG, tasks))
        self.settings = _settings(redis_url, llm_url, self.ls, namespace, **extra)
        self.services = Services(self.settings)
        self.services.projects.seen(PROJECT, THREE_CONTROLS_CONFIG)
        self.procs = _workers(stack, self.settings, workers, Path("/tmp") / f"bench-bulk-{namespace}")
        _wait_for_workers(self.services, workers)
        self.queue = JobQueue(self.services)
        self.version = self.services.store.current(PROJECT).version

    def peak_rss(self) -> list[float | None]:
        return [_peak_rss_mb(p.pid) for p in self.procs]

    def wait(self, job: str, want: int, started: float, limit: float = 3600) -> float:
        """Seconds from ``started`` until Label Studio holds ``want`` tasks of the version, or the run ended."""
        last_view = 0.0
        while True:
            holding, _ = self.ls.holding(self.version)
            if holding >= want:
                return time.perf_counter() - started
            if time.perf_counter() - last_view > 2.0:  # the run's view reads RQ: not at every poll
                last_view = time.perf_counter()
                view = self.queue.view(job)
                if view is not None and view.state.ended:
                    return time.perf_counter() - started
                if os.environ.get("BENCH_DEBUG"):
                    print(f"  {holding}/{want} posted; run {view and view.status} {view and view.progress}",
                          file=sys.stderr, flush=True)  # fmt: skip
            if time.perf_counter() - started > limit:
                raise RuntimeError(f"bulk run did not finish in {limit:.0f} s")
            time.sleep(0.05)

    def summary(self, job: str, elapsed: float, tasks: int) -> dict:
        final = self.queue.view(job)
        while final is not None and not final.state.ended:  # the last chunk may still be closing itself
            time.sleep(0.2)
            final = self.queue.view(job)
        holding, predictions = self.ls.holding(self.version)
        return {"tasks": tasks, "posted": holding, "duplicates": predictions - holding, "wall_s": elapsed,
                "status": final.status if final else None,
                "outcomes": final.progress.tasks if final is not None and final.progress is not None else None,
                "peak_rss_mb": self.peak_rss()}  # fmt: skip


def _bulk_run(redis_url: str, llm_url: str, tasks: list[dict], workers: int, namespace: str, **extra) -> dict:
    """Queue one bulk run for ``tasks`` and time it until Label Studio holds a prediction for every one."""
    with ExitStack() as stack:
        s = Stack(stack, redis_url, llm_url, tasks, workers, namespace, **extra)
        load = os.getloadavg()
        started = time.perf_counter()
        job = s.queue.enqueue_bulk(PROJECT, s.version, reason="bench")
        elapsed = s.wait(job, len(tasks), started)
        return {"workers": workers, "load": load, **s.summary(job, elapsed, len(tasks))}


def b1(redis_url: str, tasks: int = 1000, delay: float = 0.2, limit: int = 16, workers=(1, 2, 4)) -> dict:
    ideal = tasks / limit * delay
    runs = []
    with fake_llm(delay) as llm_url:
        for n in workers:
            run = _bulk_run(redis_url, llm_url, _tasks(tasks, long=False), n, f"b1w{n}t{tasks}",
                            llm_global_concurrency=limit, llm_concurrency=16, llm_max_retries=2)  # fmt: skip
            run["ratio_to_ideal"] = run["wall_s"] / ideal
            runs.append(run)
            print(f"B1 {tasks} tasks, {n} RQ worker(s): {run['wall_s']:.1f} s for {run['posted']}/{tasks} tasks in LS "
                  f"(ideal {ideal:.1f} s, {run['ratio_to_ideal']:.2f}x), duplicates {run['duplicates']}, "
                  f"{run['outcomes']}, peak RSS {run['peak_rss_mb']} MB, load {run['load'][0]:.1f}",
                  flush=True)  # fmt: skip
    return {"tasks": tasks, "llm_delay_s": delay, "limit": limit, "ideal_s": ideal, "runs": runs}


def b4(redis_url: str, tasks: int = 10000, delay: float = 0.2, limit: int = 16) -> dict:
    """A large run queued on one worker listening to both queues, then a training trigger."""
    with fake_llm(delay) as llm_url, ExitStack() as stack:
        s = Stack(stack, redis_url, llm_url, _tasks(tasks, long=False), 1, "b4", llm_global_concurrency=limit,
                  llm_concurrency=16, train_min_gold=4)  # fmt: skip
        load = os.getloadavg()
        run = s.queue.enqueue_bulk(PROJECT, s.version, reason="bench")
        deadline = time.monotonic() + 300
        while (s.services.bulk.run(run) or {}).get("planned") is not True:  # every chunk queued
            if time.monotonic() > deadline:
                raise RuntimeError("the plan did not finish")
            time.sleep(0.1)
        queued = s.queue.bulk_queue.count
        triggered = time.time()
        job = s.queue.train_now(PROJECT, reason="bench")["job"]
        while True:
            view = s.queue.view(job)
            if view is not None and view.started_at is not None:
                break
            if time.time() - triggered > 600:
                raise RuntimeError("the training job never started")
            time.sleep(0.02)
        from datetime import datetime

        waited = datetime.fromisoformat(view.started_at).timestamp() - triggered
        cancelled = time.time()
        s.queue.cancel(run, "bench")
        while not s.queue.view(run).state.ended:
            time.sleep(0.2)
        stopped = time.time() - cancelled
        final = s.queue.view(run)
    print(f"B4 {tasks}-task run, {queued} chunks queued ahead: the training job started {waited:.2f} s after its "
          f"trigger; cancelling the bulk run took {stopped:.1f} s ({final.progress.tasks}), load {load[0]:.1f}",
          flush=True)  # fmt: skip
    return {"tasks": tasks, "chunks_queued": queued, "training_started_after_s": waited, "cancel_took_s": stopped,
            "bulk_outcomes": final.progress.tasks, "status": final.status, "load": load}  # fmt: skip


def b5(redis_url: str, tasks: int = 1000, delay: float = 0.2, limit: int = 16) -> dict:
    """One chunk's import refused three times (all of the chunk's own attempts), then Label Studio recovers."""
    victim = tasks // 2
    with fake_llm(delay) as llm_url, ExitStack() as stack:
        s = Stack(stack, redis_url, llm_url, _tasks(tasks, long=False), 1, "b5", llm_global_concurrency=limit,
                  llm_concurrency=16)  # fmt: skip
        s.ls.task_faults[victim] = deque([PostFault.REJECT] * 3)
        load = os.getloadavg()
        started = time.perf_counter()
        job = s.queue.enqueue_bulk(PROJECT, s.version, reason="bench")
        elapsed = s.wait(job, tasks, started)
        out = {"load": load, "backoff_s": s.settings.bulk_retry_backoff, **s.summary(job, elapsed, tasks)}
        out["imports"], out["faults_left"] = s.ls.imports, len(s.ls.task_faults[victim])
    print(f"B5 {tasks} tasks, one chunk's import refused 3 times: {out['posted']}/{tasks} posted, duplicates "
          f"{out['duplicates']}, {out['status']} after {elapsed:.1f} s (retry backoff {out['backoff_s']:.0f} s), "
          f"{out['imports']} imports, load {load[0]:.1f}", flush=True)  # fmt: skip
    return out


def b2(redis_url: str, tasks: int = 50, concurrency: int = 2) -> dict:
    from optimizer.serving.llm import LLMClient

    with llama_server() as base:
        bodies = llm_bodies(base, "smollm2-135m", "llama_schema", "Label the input.",
                            [t["data"]["text"] for t in _tasks(tasks, long=True)], THREE_CONTROLS_CONFIG)  # fmt: skip
        with DirectLLM(base, concurrency) as direct:
            direct.send_all(bodies[:1])  # warm-up
            started = time.perf_counter()
            replies = direct.send_all(bodies)
            raw = time.perf_counter() - started
        raw_tokens = sum(r["usage"]["completion_tokens"] for r in replies)
        print(f"B2 raw llama.cpp: {tasks} tasks in {raw:.1f} s = {tasks / raw:.3f} tasks/s", flush=True)
        run = _bulk_run(redis_url, base, _tasks(tasks, long=True), 1, "b2", llm_model="smollm2-135m",
                        llm_provider="llamacpp", llm_concurrency=concurrency, llm_global_concurrency=concurrency,
                        llm_timeout=300)  # fmt: skip
        del LLMClient
    through = run["wall_s"]
    print(f"B2 bulk run, 1 RQ worker: {tasks} tasks in LS after {through:.1f} s = {tasks / through:.3f} tasks/s "
          f"({tasks / through / (tasks / raw):.2f} of raw)", flush=True)  # fmt: skip
    return {"tasks": tasks, "concurrency": concurrency, "raw_s": raw, "raw_tasks_per_s": tasks / raw,
            "bulk_s": through, "bulk_tasks_per_s": tasks / through, "ratio": raw / through,
            "raw_completion_tokens": raw_tokens, "duplicates": run["duplicates"]}  # fmt: skip


def b3(redis_url: str, batch: int = 12, repeat: int = 3) -> dict:
    """Single-task latency after a timed-out batch, the deadline reaching the LLM calls (now) or not (before)."""
    from _wsgi import create_app
    from optimizer.serving.llm import LLMClient
    from optimizer.settings import Settings

    original = LLMClient.complete

    def before(self, messages, schema=None, max_tokens=None, *, deadline=None, priority=None):
        return original(self, messages, schema, max_tokens)  # the old client: no deadline, no priority

    out: dict = {"batch": batch}
    with llama_server() as base:

        def client(deadline: float, namespace: str):
            return create_app(Settings(_env_file=None, redis_url=redis_url, redis_namespace=namespace,
                                       llm_base_url=base, llm_model="smollm2-135m", llm_provider="llamacpp",
                                       llm_concurrency=4, llm_global_concurrency=4, llm_timeout=120,
                                       predict_deadline=deadline, log_level="WARNING",
                                       default_prompt="Label the input.")).test_client()  # fmt: skip

        def predict(c, n: int, offset: int) -> float:
            body = {"tasks": [{"data": {"text": (EMAIL * 2).format(i=offset + i)}} for i in range(n)],
                    "label_config": THREE_CONTROLS_CONFIG}  # fmt: skip
            started = time.perf_counter()
            assert c.post("/predict", json=body).status_code == 200
            return time.perf_counter() - started

        warm = client(300, "b3warm")
        predict(warm, 1, 0)
        single = median([predict(warm, 1, 100 + i) for i in range(repeat)])
        deadline = max(3.0, 2.5 * single)
        out.update(single_s=single, deadline_s=deadline)
        for name in ("before", "after"):
            LLMClient.complete = before if name == "before" else original
            try:
                latencies = []
                for r in range(repeat):
                    c = client(deadline, f"b3{name}{r}")
                    predict(c, batch, 1000 * (r + 1) + (0 if name == "after" else 500))
                    latencies.append(predict(c, 1, 9000 + r + (0 if name == "after" else 500)))
                    time.sleep(0.5 if name == "after" else 0)
            finally:
                LLMClient.complete = original
            out[name] = {"next_single_s": median(latencies), "runs_s": latencies}
            print(f"B3 {name}: next single-task /predict {median(latencies):.1f} s after a {batch}-task batch cut at "
                  f"{deadline:.1f} s (normal single task {single:.1f} s)", flush=True)  # fmt: skip
        # Let the "before" run's abandoned calls drain before the server stops.
    return out


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bulk")
    parser.add_argument("--only", default="B1,B4,B5")
    parser.add_argument("--tasks", type=int, default=1000, help="B1 task count")
    parser.add_argument("--workers", default="1,2,4", help="B1 worker counts, comma-separated")
    parser.add_argument("--embedded-tasks", type=int, default=50, help="B2 task count")
    args = parser.parse_args()
    only = set(args.only.split(","))
    results: dict = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    if "B1" in results:  # issue 10's file: one run at the top level; kept whole, as the figures before issue 20
        old = {k: results.pop(k) for k in ("started", "load", "B1", "load_after") if k in results}
        results["B1-issue10"] = {**old.pop("B1"), **old}
    run = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "load": os.getloadavg(),
           "command": "python -m bench.bulk " + " ".join(sys.argv[1:])}  # fmt: skip
    with redis_server() as redis:
        if "B1" in only:
            workers = tuple(int(n) for n in args.workers.split(","))
            results[f"B1-{args.tasks}"] = {**run, **b1(redis.url, args.tasks, workers=workers)}
        if "B2" in only:
            results["B2"] = {**run, **b2(redis.url, args.embedded_tasks)}
        if "B3" in only:
            results["B3"] = {**run, **b3(redis.url)}
        if "B4" in only:
            results["B4"] = {**run, **b4(redis.url)}
        if "B5" in only:
            results["B5"] = {**run, **b5(redis.url)}
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2))
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
