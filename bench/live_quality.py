"""What live quality and spend cost: Redis memory per remembered answer, and the time an annotation webhook spends.

    python -m bench.live_quality             # 100,000 tasks, 2,000 annotations
    python -m bench.live_quality --tasks 10000

Against a real redis-server on loopback (no LLM involved):
- **memory**: ``used_memory`` before and after remembering ``--tasks`` answers the way ``/predict`` does (batches of
  32, one pipeline each), for a single-label answer and for a three-label one, with the production TTL;
- **scoring**: the time ``LiveQuality.observe`` takes for one ``ANNOTATION_CREATED`` (one GET, the verifier, one
  Lua call), median and p99 over ``--annotations`` webhooks, then the same for ``ANNOTATION_UPDATED`` (which takes
  the old contribution away first); Label Studio waits at most 1 s for the whole webhook;
- **spend**: the time one answered call's spend record takes (one pipelined round trip).

Prints a table and writes bench/results/live_quality.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from optimizer.labelstudio.labelconfig import parse_label_config
from optimizer.runtime.live import LiveQuality
from optimizer.runtime.services import Services
from optimizer.settings import Settings
from testkit.constants import THREE_CONTROLS_CONFIG

from .harness import redis_server

OUT = Path(__file__).resolve().parent / "results" / "live_quality.json"
PROJECT = "12.1796000000"
VERSION = "pv-0123456789ab.c0a1b2c3.m4d5e6f7"  # as long as the composite versions Label Studio will see


def used(services: Services) -> int:
    return int(services.redis.info("memory")["used_memory"])


def remember(services: Services, tasks: int, answer: dict) -> float:
    schema = parse_label_config(THREE_CONTROLS_CONFIG)
    result = [{"from_name": name, "to_name": "text", "type": "choices", "value": {"choices": labels}}
              for name, labels in answer.items()]  # fmt: skip
    live = LiveQuality(services)
    services.redis.flushdb()
    before = used(services)
    for start in range(0, tasks, 32):
        batch = [{"id": i, "data": {"text": "x"}} for i in range(start, min(tasks, start + 32))]
        live.remember(PROJECT, schema, batch, [{"result": result, "model_version": VERSION}] * len(batch))
    return (used(services) - before) / tasks


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def webhook(annotation: int, task: int, label: str, action: str) -> dict:
    result = [{"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": [label]}}]
    return {
        "action": action,
        "annotation": {"id": annotation, "task": task, "result": result},
        "task": {"id": task, "data": {"text": "x"}},
        "project": {"label_config": THREE_CONTROLS_CONFIG},
    }


def scoring(services: Services, annotations: int) -> dict:
    live = LiveQuality(services)
    out = {}
    for action, label in (("ANNOTATION_CREATED", "negative"), ("ANNOTATION_UPDATED", "neutral")):
        times = []
        for i in range(annotations):
            payload = webhook(10_000_000 + i, i, label, action)
            started = time.perf_counter()
            live.observe(PROJECT, action, payload)
            times.append(time.perf_counter() - started)
        out[action] = {"median_ms": statistics.median(times) * 1000, "p99_ms": percentile(times, 0.99) * 1000}
    return out


def spending(services: Services, calls: int = 2000) -> dict:
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        services.spend.record(PROJECT, "labeller", "default", 300, 12, 0.0000522)
        times.append(time.perf_counter() - started)
    return {"median_ms": statistics.median(times) * 1000, "p99_ms": percentile(times, 0.99) * 1000}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--annotations", type=int, default=2_000)
    args = parser.parse_args(argv)
    with redis_server() as server:
        services = Services(Settings(_env_file=None, redis_url=server.url, redis_namespace="bench"))
        single = remember(services, args.tasks, {"sentiment": ["negative"]})
        multi = remember(services, args.tasks, {"topics": ["billing", "shipping", "returns"], "sentiment": ["neutral"]})
        timings = scoring(services, args.annotations)
        spend = spending(services)
    results = {
        "tasks": args.tasks,
        "bytes_per_task": {"one_label": round(single), "four_labels_two_controls": round(multi)},
        "mb_at_tasks": {
            "one_label": round(single * args.tasks / 2**20, 1),
            "four_labels_two_controls": round(multi * args.tasks / 2**20, 1),
        },
        "webhook_scoring": timings,
        "spend_record": spend,
    }
    OUT.write_text(json.dumps(results, indent=2) + "\n")
    print(f"remembered answers, {args.tasks} tasks: {results['mb_at_tasks']['one_label']} MB "
          f"({results['bytes_per_task']['one_label']} B/task) one label; "
          f"{results['mb_at_tasks']['four_labels_two_controls']} MB "
          f"({results['bytes_per_task']['four_labels_two_controls']} B/task) four labels in two controls")  # fmt: skip
    for action, t in timings.items():
        print(f"webhook scoring {action}: median {t['median_ms']:.2f} ms, p99 {t['p99_ms']:.2f} ms (LS allows 1000)")
    print(f"spend record per answered call: median {spend['median_ms']:.3f} ms, p99 {spend['p99_ms']:.3f} ms")
    return results


if __name__ == "__main__":
    main()
