"""D1: how long the dashboard's pages take with a realistic amount of history, and what listing jobs costs.

    python -m bench.dashboard [--projects 20] [--versions 10] [--runs 200] [--repeat 11]

One real training run (the scripted LLM of ``testkit.staged``, a fake Label Studio, the real job function in
an in-process RQ worker) gives a real run summary, optimiser report included. It is then replayed as ``--runs``
finished training jobs spread over ``--projects`` projects, each with ``--versions`` promoted policy versions, in a
real redis-server. Each page is requested ``--repeat`` times through Flask's test client (no network, so the
figures are the backend's own work); medians are printed. Side by side: listing every kept job with and without
its result, which is why listings leave results out and pages fetch only the ones they show.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import time
import uuid
from pathlib import Path

import pytest
from rq import SimpleWorker

from bench.harness import median, redis_server
from optimizer.jobs.kinds import JobKind
from optimizer.jobs.queue import JobQueue
from optimizer.serving.policy import Policy
from optimizer.settings import Settings
from testkit.constants import SUPPORT_CONFIG
from testkit.dashboard_seed import PROJECT, run_in_process, seed_tasks
from testkit.fakellm import FakeLLM
from testkit.fakels import FakeLabelStudio
from testkit.lspayloads import uid
from testkit.staged import StagedResponder

AUTH = {"Authorization": "Basic " + base64.b64encode(b"bench:bench-pass").decode()}


SUMMARY: dict = {}  # the real run's summary; the in-process worker's replayed jobs return it


def replay(project: str) -> dict:
    """The job function of the replayed runs: a real run's summary as its result, with arguments as small as a real
    training job's (``(project,)``), so fetching a job costs what it costs in production."""
    return {**SUMMARY, "project": project}


def _interleaved_ms(fns: dict, repeat: int) -> dict[str, float]:
    """Median milliseconds of each callable, measured in rounds that take each once, so a change in the machine's
    load during the run falls on all of them alike (the machine is shared)."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            started = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - started) * 1000)
    return {name: round(median(values), 2) for name, values in times.items()}


def d1(projects: int, versions: int, runs: int, repeat: int) -> dict:
    from _wsgi import create_app

    responder = StagedResponder()
    with (
        redis_server() as redis,
        FakeLLM(responder) as llm,
        FakeLabelStudio(SUPPORT_CONFIG, seed_tasks()) as ls,
        pytest.MonkeyPatch.context() as env,
    ):
        namespace = "bench" + uuid.uuid4().hex[:6]
        settings = Settings(
            _env_file=None, redis_url=redis.url, redis_namespace=namespace, rq_queue=namespace,
            llm_base_url=llm.base_url, llm_model="fake", llm_provider="auto", log_format="text", log_level="WARNING",
            default_prompt="Label the conversation.", label_studio_url=ls.url, label_studio_api_key=ls.token,
            optimize_budget=400, basic_auth_user="bench", basic_auth_pass="bench-pass",
        )  # fmt: skip
        app = create_app(settings)
        services = app.extensions["services"]
        client = app.test_client()
        names = [PROJECT] + [uid(n) for n in range(2, projects + 1)]
        for name in names:
            client.post("/setup", json={"project": name, "schema": SUPPORT_CONFIG}, headers=AUTH)
        real = JobQueue(services).view(run_in_process(services, env))
        summary = real.result
        SUMMARY.update(summary)
        for name in names:
            live = services.store.current(name)
            for v in range(versions):
                policy = Policy(f"{live.instruction}\nRule {v} for {name}.", meta={"val_score": 0.5 + v / 40})
                services.store.promote(name, policy, live.version, job=f"bench-{v}", source="train")
                live = policy
        for i in range(runs - 1):
            name = names[i % len(names)]
            JobQueue(services).queue.enqueue_call(
                "bench.dashboard.replay", args=(name,), result_ttl=3600,
                meta={"project": name, "kind": JobKind.TRAIN.value, "phase": "done"},
            )  # fmt: skip
        SimpleWorker([settings.rq_queue], connection=services.rq_redis).work(burst=True)
        listed = JobQueue(services).jobs(limit=10_000)
        assert len(listed) == runs, len(listed)

        def page(path: str):
            def get():
                answer = client.get(path, headers=AUTH)
                assert answer.status_code == 200, (path, answer.status_code)

            return get

        pages = {
            "/dashboard": page("/dashboard"),
            "/projects (JSON twin)": page("/projects"),
            "/dashboard/projects/<p>": page(f"/dashboard/projects/{PROJECT}"),
            "/dashboard/runs/<job>": page(f"/dashboard/runs/{real.id}"),
            "/dashboard/live": page("/dashboard/live"),
        }
        return {
            "projects": projects,
            "versions_per_project": versions + 1,
            "runs": runs,
            "report_bytes": len(json.dumps(summary)),
            "steps": len(summary["report"]["run"]["steps"]),
            "pages_ms": _interleaved_ms(pages, repeat),
            "list_jobs_ms": _interleaved_ms(
                {
                    "with results": lambda: JobQueue(services).jobs(limit=10_000, results=True),
                    "without results": lambda: JobQueue(services).jobs(limit=10_000),
                },
                repeat,
            ),
            "load_average": os.getloadavg(),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--projects", type=int, default=20)
    parser.add_argument("--versions", type=int, default=10)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=11)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "dashboard.json")
    args = parser.parse_args()
    result = {**d1(args.projects, args.versions, args.runs, args.repeat), "repeat": args.repeat}
    result["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"D1: {result['projects']} projects x {result['versions_per_project']} versions, {result['runs']} finished "
        f"runs (report {result['report_bytes'] / 1024:.0f} KiB, {result['steps']} steps); medians of {args.repeat}, "
        f"load average {result['load_average'][0]:.1f}"
    )
    for name, value in result["pages_ms"].items():
        print(f"  {name:<28} {value:8.1f} ms")
    lists = result["list_jobs_ms"]
    ratio = lists["with results"] / lists["without results"] if lists["without results"] else float("nan")
    print(
        f"  list {result['runs']} jobs: with results {lists['with results']:.1f} ms, "
        f"without {lists['without results']:.1f} ms = {ratio:.1f}x"
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
