"""What a learned ranker costs at serving time: build seconds per pool, milliseconds per task, memory (issue 22).

For BANKING77 (77 intents) and GoEmotions-Ekman (7 emotions, multi-label) at 100 and 300 gold items, and the
graded BANKING77 judge set (a (prompt, response) pair per item) at 200, each ranker kind is built from a stratified
gold sample (``bench.optimize.sample``) and then asked about held-out test texts one at a time, as ``/predict``
asks about one task: the median and 95th percentile of one ``rank`` call, which includes the features, the model,
calibration and the ranking. The goal is at most 2 ms per task. Build time is the once-per-process cost of a
pool (out-of-fold cross-validation over the hyperparameter grid, then the refit); memory is the coefficient
arrays the LRU holds per ranker (``cache.RANKERS_PER_PROCESS`` of them at most).

    python -m bench.rankers                    # writes bench/results/rankers.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

from bench.graded import build as graded
from bench.graded import confusable, load
from bench.optimize import DEFAULT_DATA, sample
from bench.soft_rewards import SCHEMA as JUDGE_SCHEMA
from bench.soft_rewards import items as graded_items
from optimizer.learning.gold import load_gold
from optimizer.serving.modes import RankerKind
from optimizer.serving.policy import Demo
from optimizer.serving.ranking import cache

ROOT = Path(__file__).resolve().parent.parent


def sets(data: str):
    for name in ("banking77", "goemotions_ekman"):
        folder = Path(data) / name
        train = load_gold(folder / "train.jsonl", labels_path=folder / "labels.json")
        test = load_gold(folder / "test.jsonl", labels_path=folder / "labels.json", config=train.label_config)
        for n in (100, 300):
            yield name, n, train.schema, sample(train.items, n, 0), sample(test.items, 200, 0)
    source = load("train")
    nearest = confusable(source)
    gold = graded_items(graded(source, 200, seed=0, nearest=nearest), "g")
    held = graded_items(graded(load("test"), 200, seed=100, nearest=nearest), "h")
    yield "graded_judge", 200, JUDGE_SCHEMA, gold, held


def measure(kind: RankerKind, schema, gold, test, repeat: int) -> dict:
    pool = tuple(Demo(item.input, item.answer) for item in gold)
    control = schema.choices[0]
    cache.clear()
    started = time.perf_counter()
    ranker = cache.ranker_for(kind, schema, control, pool)
    build = time.perf_counter() - started
    texts = [item.input for item in test]
    ranker.rank(texts[0])  # warm: first-call allocations
    times = []
    for _ in range(repeat):
        for text in texts:
            started = time.perf_counter()
            ranker.rank(text)
            times.append((time.perf_counter() - started) * 1000)
    times.sort()
    model = ranker.model
    held = sum(getattr(model, name).nbytes for name in ("coef", "intercept") if hasattr(model, name))
    held += getattr(getattr(model, "weights", None), "data", b"").nbytes if hasattr(model, "weights") else 0
    return {
        "build_s": round(build, 3),
        "ms_per_task_median": round(statistics.median(times), 3),
        "ms_per_task_p95": round(times[int(0.95 * (len(times) - 1))], 3),
        "model_mb": round(held / 2**20, 2),
        "param": ranker.param,
        "tasks_timed": len(times),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "rankers.json")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()[0]
    rows = []
    print("| set | gold | ranker | build s | ms/task median | p95 | model MB |")
    print("|---|---|---|---|---|---|---|")
    for name, n, schema, gold, test in sets(args.data):
        for kind in RankerKind:
            row = {"set": name, "gold": n, "ranker": kind.value, **measure(kind, schema, gold, test, args.repeat)}
            rows.append(row)
            print(f"| {name} | {n} | {kind.value} | {row['build_s']} | {row['ms_per_task_median']} | "
                  f"{row['ms_per_task_p95']} | {row['model_mb']} |", flush=True)  # fmt: skip
    worst = max(r["ms_per_task_median"] for r in rows)
    verdict = "PASS" if worst <= 2.0 else "MISS"
    load_after = os.getloadavg()[0]
    print(f"worst median {worst} ms/task (goal <= 2 ms): {verdict}; load average {load_before:.1f} -> {load_after:.1f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rows": rows, "goal_ms": 2.0, "worst_median_ms": worst, "verdict": verdict,
                                    "load_average": [round(load_before, 2), round(load_after, 2)],
                                    "cpus": os.cpu_count()}, indent=1) + "\n")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
