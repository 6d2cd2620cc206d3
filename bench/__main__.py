"""``make bench`` (= ``python -m bench``): the serving benchmarks P1, P2, P5, P6 and the retraining path R1, R2.

Every server is a real process on loopback: redis-server, the scripted fake LLM, llama.cpp with SmolLM2, gunicorn
and an RQ worker. Prints a table with each goal beside its number and writes the raw figures to
bench/results/serving.json (P1-P6) and bench/results/retraining.json (R1, R2), which are committed: bench/README.md's
tables are generated from them (``python -m bench.tables --write``).

    python -m bench                 # all of them (about 4-6 minutes on 2 cores)
    python -m bench --only P1,P2    # a subset (its file then holds only those)
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
from .tables import retraining_table, serving_rows

HERE = Path(__file__).resolve().parent


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


def table(results: dict) -> str:
    header = ("", "benchmark", "measured", "goal", "")
    body = serving_rows(results)
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
    parser.add_argument("--output", default=str(HERE / "results"), help="directory for serving.json, retraining.json")
    args = parser.parse_args()
    only = {x.strip().upper() for x in args.only.split(",") if x.strip()}
    unknown = only - {"P1", "P2", "P5", "P6", "R1", "R2"}
    if unknown:
        sys.exit(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    results = run(only)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    common = {"machine": results["machine"], "started": results["started"]}
    if "R" in results:
        retraining = {**common, **results.pop("R")}
        (out / "retraining.json").write_text(json.dumps(retraining, indent=2) + "\n")
        print(retraining_table(retraining) + f"\n\nwrote {out / 'retraining.json'}\n")
    if only & {"P1", "P2", "P5", "P6"}:
        (out / "serving.json").write_text(json.dumps(results, indent=2) + "\n")
        print(table(results))
        print(f"\nwrote {out / 'serving.json'}")


if __name__ == "__main__":
    main()
