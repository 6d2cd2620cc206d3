"""``make bench`` (= ``python -m bench``): the serving benchmarks P1, P2, P5, P6 and the retraining path R1, R2.

Every server is a real process on loopback: redis-server, the scripted fake LLM, llama.cpp with SmolLM2, gunicorn
and an RQ worker. Prints a table with each goal beside its number and writes everything to bench/results.json.

    python -m bench                 # all of them (about 2-3 minutes on 2 cores)
    python -m bench --only P1,P2    # a subset
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

from testkit.embedded import find_server_python

from .harness import redis_server

HERE = Path(__file__).resolve().parent
NO_GROWTH_MB = 5.0  # RSS change between 1,000 and 2,000 predictions below which memory counts as flat


def run(only: set[str]) -> dict:
    results: dict = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_before": os.getloadavg()},
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    with redis_server() as redis:
        if "P1" in only:
            from .serving import p1

            results["P1"] = p1(redis.url)
        if "P2" in only:
            from .serving import p2

            results["P2"] = p2(redis.url)
        if "P5" in only:
            if find_server_python() is None:
                results["P5"] = {"skipped": "the embedded LLM is not built (make llm, or LLM_VENV=<venv>)"}
            else:
                from .embedded import p5

                results["P5"] = p5(redis.url)
        if "P6" in only:
            from .memory import p6

            results["P6"] = p6(redis.url)
        if only & {"R1", "R2"}:
            from .retraining import retraining

            results["R"] = retraining(redis.url)
    results["machine"]["load_after"] = os.getloadavg()
    return results


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def rows(results: dict) -> list[tuple[str, str, str, str, str]]:
    out: list[tuple[str, str, str, str, str]] = []

    def add(name: str, what: str, measured: str, goal: str, ok: bool | None) -> None:
        out.append((name, what, measured, goal, "" if ok is None else verdict(ok)))

    if "P1" in results:
        r = results["P1"]
        what = f"/predict {r['tasks']} tasks, LLM {r['llm_delay_s']:.1f} s/call, C={r['concurrency']}"
        measured = f"{r['wall_s']:.2f} s vs sequential {r['sequential_wall_s']:.2f} s = {r['speedup']:.1f}x"
        add("P1", what, measured, ">= 10x faster", r["speedup"] >= 10)
        what = f"  vs ideal ceil({r['tasks']}/{r['concurrency']}) x {r['llm_delay_s']:.1f} s"
        measured = f"{r['wall_s']:.2f} s / {r['ideal_s']:.2f} s = {r['ratio_to_ideal']:.2f}x"
        add("P1", what, measured, "<= 1.3x ideal", r["ratio_to_ideal"] <= 1.3)
    if "P2" in results:
        r = results["P2"]
        wall, direct = r["wall_s"] * 1000, r["direct_llm_wall_s"] * 1000
        measured = f"{r['overhead_ms_per_task']:.2f} ms = ({wall:.0f} - {direct:.0f} ms direct) / {r['tasks']}"
        add(
            "P2",
            f"overhead per task, 0 ms LLM ({r['tasks']} tasks)",
            measured,
            "<= 2 ms",
            r["overhead_ms_per_task"] <= 2,
        )
        add("P2", "  backend CPU per task (gunicorn worker)", f"{r['backend_cpu_ms_per_task']:.2f} ms", "(info)", None)
        what = f"/health, {r['health_clients']} clients x {1 / r['health_interval_s']:.0f} req/s (median round)"
        worst = max(r["health_p99_ms_rounds"])
        measured = (
            f"p99 {r['health_p99_ms']:.1f} ms (worst round {worst:.1f}; p50 {r['health_p50_ms']:.1f}) at "
            f"{r['health_rps']:.0f} req/s"
        )
        add("P2", what, measured, "p99 <= 5 ms", r["health_p99_ms"] <= 5)
        measured = (
            f"p99 {r['health_closed_loop_p99_ms']:.1f} ms (p50 {r['health_closed_loop_p50_ms']:.1f}) at "
            f"{r['health_closed_loop_rps']:.0f} req/s"
        )
        add("P2", f"  /health, {r['health_clients']} clients closed loop", measured, "(info: saturation)", None)
    if "P5" in results:
        r = results["P5"]
        if "skipped" in r:
            out.append(("P5", "embedded model through the backend", "skipped: " + r["skipped"], ">= 0.9", "SKIP"))
        else:
            what = f"embedded SmolLM2, {r['tasks']} tasks, C={r['concurrency']}"
            measured = f"{r['backend_tasks_per_s']:.2f} vs raw {r['raw_tasks_per_s']:.2f} tasks/s = {r['ratio']:.2f}"
            add("P5", what, measured, "ratio >= 0.9", r["ratio"] >= 0.9)
            measured = f"{r['raw_sequential_tasks_per_s']:.2f} tasks/s raw with 1 in flight"
            add("P5", "  raw server, one request at a time", measured, "(info: LLM_CONCURRENCY)", None)
    if "P6" in results:
        for kind, limit in (("web", 200), ("worker", 300)):
            r = results["P6"][kind]
            worst = r.get("worst_mb", r["after_2000_mb"])
            label = "web worker (gunicorn)" if kind == "web" else f"RQ worker: {r['command']}"
            measured = f"rest {r['rest_mb']:.0f} / 1k {r['after_1000_mb']:.0f} / 2k {r['after_2000_mb']:.0f} MB"
            if kind == "worker":
                measured += f"; job peak {r['job_peak_after_2000_mb']:.0f} MB"
            add("P6", f"RSS {label}", measured, f"<= {limit} MB", worst <= limit)
            add(
                "P6",
                "  growth 1k -> 2k predictions",
                f"{r['growth_mb']:+.1f} MB",
                f"no growth (< {NO_GROWTH_MB:.0f} MB)",
                r["growth_mb"] < NO_GROWTH_MB,
            )
    if "R" in results:
        r = results["R"]["hot_swap"]
        what = f"hot swap, {r['workers']} gunicorn workers, {r['swaps']} promotions"
        measured = (
            f"all workers on the new version after median {r['swap_to_all_workers_ms_median']:.0f} ms "
            f"(max {r['swap_to_all_workers_ms_max']:.0f}); stale answers {r['stale_answers_after_promotion']}"
        )
        add("R1", what, measured, "0 stale answers", r["stale_answers_after_promotion"] == 0)
        r = results["R"]["webhooks"]
        what = f"webhook answer, {r['concurrency']} concurrent annotation events"
        measured = (
            f"median {r['answer_ms_median']:.0f} ms, p95 {r['answer_ms_p95']:.0f}, max {r['answer_ms_max']:.0f} "
            f"(alone {r['alone_answer_ms_median']:.0f} ms)"
        )
        add("R2", what, measured, "p95 <= 100 ms", r["answer_ms_p95"] <= 100)
    return out


def table(results: dict) -> str:
    header = ("", "benchmark", "measured", "goal", "")
    body = rows(results)
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(5)]
    lines = [" | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in [header, *body]]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    load = results["machine"]
    lines.append(
        f"\n{load['cpus']} CPUs; load average before {load['load_before'][0]:.2f}, after {load['load_after'][0]:.2f}"
        " (other processes on the machine slow every figure)"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="P1,P2,P5,P6,R1,R2", help="comma-separated subset of P1,P2,P5,P6,R1,R2")
    parser.add_argument("--output", default=str(HERE / "results.json"))
    args = parser.parse_args()
    only = {x.strip().upper() for x in args.only.split(",") if x.strip()}
    unknown = only - {"P1", "P2", "P5", "P6", "R1", "R2"}
    if unknown:
        sys.exit(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    results = run(only)
    results["table"] = [list(r) for r in rows(results)]
    Path(args.output).write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
