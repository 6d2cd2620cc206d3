"""A human-graded reward set built honestly from BANKING77, for the judge's tests and the soft-reward bench.

No human-graded reward data ships with this project, so one is derived from labels humans did write: BANKING77's
intents. Each row pairs a customer query (the *prompt*) with a short answer naming an intent (the *response*):

- with probability ``good_share`` (default 0.7, the realistic imbalance of graded responses) the answer names the
  query's gold intent, and its reward is 1;
- otherwise it names a *confusable* wrong intent, and its reward is 0. The confusable intent is the one whose
  training queries share the most vocabulary with the gold intent's (cosine of word counts), so a wrong answer is
  plausibly wrong ("card arrival" vs "card delivery estimate"), not absurd.

A share of queries (``pair_share``) gets both a good and a bad response, so prompts with several graded responses
exist (the RLVR export z-scores within such groups and builds preference pairs from them).

    python -m bench.graded --split train --n 60 --seed 0 --out testkit/data/graded_banking77.jsonl

Every row is ``{"id", "prompt", "response", "reward": "1"|"0", "intent", "gold_intent"}``; the reward is the stored
value of the config's ``Choice`` (``testkit.constants.REWARD_CONFIG``).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT.parent / "shared" / "data" / "banking77"
WORD = re.compile(r"[a-z']+")
TEMPLATES = (
    "This is about {intent}.",
    "Your question concerns {intent}.",
    "Intent: {intent}.",
    "I would file this under {intent}.",
)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def spoken(intent: str) -> str:
    return intent.replace("_", " ")


def confusable(rows: list[dict]) -> dict[str, str]:
    """Each intent's nearest other intent by the cosine of their queries' word counts."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for row in rows:
        counts[row["labels"][0]].update(WORD.findall(row["text"].lower()))
    norms = {k: math.sqrt(sum(v * v for v in c.values())) for k, c in counts.items()}
    nearest = {}
    for a, ca in counts.items():
        best, best_sim = None, -1.0
        for b, cb in counts.items():
            if a == b:
                continue
            dot = sum(v * cb.get(w, 0) for w, v in ca.items())
            sim = dot / (norms[a] * norms[b] or 1.0)
            if sim > best_sim or (sim == best_sim and b < (best or b)):
                best, best_sim = b, sim
        nearest[a] = best
    return nearest


def build(
    rows: list[dict],
    n: int,
    seed: int = 0,
    good_share: float = 0.7,
    pair_share: float = 0.25,
    nearest: dict[str, str] | None = None,
) -> list[dict]:
    """``n`` graded rows drawn from ``rows`` (BANKING77 ``{"text", "labels"}``), seeded and deterministic."""
    rng = random.Random(seed)
    nearest = nearest or confusable(rows)
    pool = list(rows)
    rng.shuffle(pool)
    out: list[dict] = []
    for query in pool:
        if len(out) >= n:
            break
        gold = query["labels"][0]
        goods = [True, False] if rng.random() < pair_share else [rng.random() < good_share]
        for good in goods:
            if len(out) >= n:
                break
            intent = gold if good else nearest[gold]
            template = TEMPLATES[rng.randrange(len(TEMPLATES))]
            out.append(
                {
                    "id": f"g{len(out)}",
                    "prompt": query["text"],
                    "response": template.format(intent=spoken(intent)),
                    "reward": "1" if good else "0",
                    "intent": intent,
                    "gold_intent": gold,
                }
            )
    return out


def load(split: str = "train", source: Path = SOURCE) -> list[dict]:
    path = source / f"{split}.jsonl"
    if not path.is_file():
        raise SystemExit(f"{path} not found: the graded set is built from BANKING77 in ../shared/data/banking77")
    return read_jsonl(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="train", choices=("train", "test"))
    parser.add_argument("--n", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--good-share", type=float, default=0.7)
    parser.add_argument("--source", type=Path, default=SOURCE)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    graded = build(load(args.split, args.source), args.n, args.seed, args.good_share)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in graded), encoding="utf-8")
    good = sum(r["reward"] == "1" for r in graded)
    print(f"{len(graded)} rows ({good} good, {len(graded) - good} bad) → {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
