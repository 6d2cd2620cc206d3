"""Bulk pre-annotation and the stack-wide LLM limit (issue 10): B1, B2, B3.

    python -m bench.bulk                    # all three (B2 and B3 need the embedded model)
    python -m bench.bulk --only B1 --tasks 1000

- **B1**: the fake LLM answering in 200 ms, 1,000 tasks, ``LLM_GLOBAL_CONCURRENCY=16``, with 1, 2 and 4 RQ workers:
  seconds from queueing the run until every task's prediction is in (the scripted) Label Studio, against the ideal
  1000 / 16 x 0.2 s = 12.5 s.
- **B2**: the embedded SmolLM2, long tasks with three controls: seconds until every task is in Label Studio through
  a bulk run with one RQ worker, and its tasks per second beside the raw llama.cpp server sent the very same
  requests (built by the backend's own code) with the same number in flight.
- **B3**: the latency of a single-task ``/predict`` right after a batch that ran into its deadline, with the
  deadline reaching every LLM call (now) and without (before: the predictor stopped waiting, but its calls ran on
  until ``LLM_TIMEOUT``). "Before" is the same code with the deadline withheld from the LLM calls.

Every part is a real process on loopback (redis-server, the fake LLM, llama.cpp, RQ workers) except the scripted
Label Studio, an in-process HTTP server (``testkit/fakels.py``) that stores what the workers post.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

from optimizer.jobs.queue import JobQueue
from testkit.backendprocess import ROOT
from testkit.constants import THREE_CONTROLS_CONFIG
from testkit.fakels import FakeLabelStudio

from .harness import DirectLLM, fake_llm, llama_server, llm_bodies, median, redis_server

HERE = Path(__file__).resolve().parent
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
        env[name.upper()] = ("1" if value else "0") if isinstance(value, bool) else str(value)
    env["PYTHONPATH"] = str(ROOT)
    return env


def _workers(stack: ExitStack, settings, n: int, log: Path) -> None:
    env = _env(settings)
    for i in range(n):
        out = open(log.with_suffix(f".{i}.log"), "w")  # noqa: SIM115  (closed by the stack)
        stack.callback(out.close)
        proc = subprocess.Popen([sys.executable, "-m", "optimizer", "worker", "--name", f"bench-{i}-{os.getpid()}"],
                                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
        stack.callback(lambda p=proc: (p.terminate(), p.wait(10)))


def _bulk_run(redis_url: str, llm_url: str, tasks: list[dict], workers: int, namespace: str, **extra) -> dict:
    """Queue one bulk run for ``tasks`` and time it until Label Studio holds a prediction for every one."""
    from optimizer.runtime.services import Services

    with ExitStack() as stack, FakeLabelStudio(THREE_CONTROLS_CONFIG, tasks) as ls:
        settings = _settings(redis_url, llm_url, ls, namespace, **extra)
        services = Services(settings)
        services.projects.seen(PROJECT, THREE_CONTROLS_CONFIG)
        _workers(stack, settings, workers, Path("/tmp") / f"bench-bulk-{namespace}")
        from rq import Worker

        deadline = time.monotonic() + 60
        while Worker.count(connection=services.rq_redis, queue=JobQueue(services).queue) < workers:
            if time.monotonic() > deadline:
                raise RuntimeError("RQ workers did not start")
            time.sleep(0.1)
        version = services.store.current(PROJECT).version
        started = time.perf_counter()
        job = JobQueue(services).enqueue_bulk(PROJECT, version, reason="bench")
        while True:
            posted = {p["task"] for p in ls.predictions() if p["model_version"] == version}
            if len(posted) >= len(tasks):
                break
            view = JobQueue(services).view(job)
            if view is not None and view.status in ("failed", "finished"):  # every chunk is done; some may have failed
                break
            if time.perf_counter() - started > 3600:
                raise RuntimeError("bulk run did not finish in an hour")
            if os.environ.get("BENCH_DEBUG"):
                print(f"  {len(posted)}/{len(tasks)} posted; run {view and view.status} {view and view.progress}",
                      file=sys.stderr, flush=True)  # fmt: skip
                time.sleep(2)
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
        duplicates = len([p for p in ls.predictions() if p["model_version"] == version]) - len(posted)
        final = JobQueue(services).view(job)
        outcomes = final.progress.tasks if final is not None and final.progress is not None else None
        return {"workers": workers, "tasks": len(tasks), "posted": len(posted), "wall_s": elapsed,
                "duplicates": duplicates, "outcomes": outcomes}  # fmt: skip


def b1(redis_url: str, tasks: int = 1000, delay: float = 0.2, limit: int = 16) -> dict:
    ideal = tasks / limit * delay
    runs = []
    with fake_llm(delay) as llm_url:
        for workers in (1, 2, 4):
            run = _bulk_run(redis_url, llm_url, _tasks(tasks, long=False), workers, f"b1w{workers}",
                            llm_global_concurrency=limit, llm_concurrency=16, llm_max_retries=2)  # fmt: skip
            run["ratio_to_ideal"] = run["wall_s"] / ideal
            runs.append(run)
            print(f"B1 {workers} RQ worker(s): {run['wall_s']:.1f} s for {run['posted']}/{tasks} tasks in LS (ideal "
                  f"{ideal:.1f} s, {run['ratio_to_ideal']:.2f}x), duplicates {run['duplicates']}, {run['outcomes']}",
                  flush=True)  # fmt: skip
    return {"tasks": tasks, "llm_delay_s": delay, "limit": limit, "ideal_s": ideal, "runs": runs}


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
    parser.add_argument("--only", default="B1,B2,B3")
    parser.add_argument("--tasks", type=int, default=1000, help="B1 task count")
    parser.add_argument("--embedded-tasks", type=int, default=50, help="B2 task count")
    args = parser.parse_args()
    only = set(args.only.split(","))
    results: dict = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "load": os.getloadavg()}
    with redis_server() as redis:
        if "B1" in only:
            results["B1"] = b1(redis.url, args.tasks)
        if "B2" in only:
            results["B2"] = b2(redis.url, args.embedded_tasks)
        if "B3" in only:
            results["B3"] = b3(redis.url)
    results["load_after"] = os.getloadavg()
    path = HERE / "results" / "bulk.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
