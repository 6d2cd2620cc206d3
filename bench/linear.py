"""What a practitioner fits in five minutes: TF-IDF + logistic regression on the gold, no LLM (issue 22).

Word 1-2-grams and character 2-5-grams (sublinear TF-IDF, the product's own ``serving.ranking.features``), then
scikit-learn's ``LogisticRegression``: multinomial for a single-choice control, one-vs-rest for a multiple-choice one,
whose labels are those at or above a threshold (and always the most likely one). ``C`` (and, for multiple choice,
the threshold) is chosen on the validation split our loop uses, then the model is refitted on all gold for the
test items: the same data, split and test as every other method, and the protocol of ``bench/knn.py``.

It is deliberately plain (no calibration, no out-of-fold selection, no per-label thresholds): the baseline the
product's ranker has to match, not the ranker itself.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
from sklearn.linear_model import LogisticRegression

from optimizer.labelstudio.labelconfig import Schema
from optimizer.learning.evaluation import Evaluation, score_prediction
from optimizer.learning.gold import GoldItem
from optimizer.learning.splits import split
from optimizer.learning.verifiers import label_set
from optimizer.serving.modes import Source
from optimizer.serving.predictor import Prediction
from optimizer.serving.ranking.features import Features

CS = (1.0, 10.0, 100.0)
THRESHOLDS = (0.2, 0.3, 0.4, 0.5)


class Linear:
    def __init__(self, schema: Schema, gold: Sequence[GoldItem], c: float, threshold: float = 0.5) -> None:
        self.schema, self.c, self.threshold = schema, c, threshold
        texts = [item.input for item in gold]
        self.features = Features(texts)
        x = self.features.transform(texts)
        self.models = {}
        for control in schema.choices:
            labels = [label_set(item.answer.get(control.name)) for item in gold]
            if control.multiple:
                per_label = {}
                for label in control.labels:
                    y = np.array([label in ls for ls in labels], dtype=int)
                    per_label[label] = (
                        LogisticRegression(C=c, max_iter=2000).fit(x, y) if 0 < y.sum() < len(y) else y.mean()
                    )
                self.models[control.name] = per_label
            else:
                y = [ls[0] if ls else "" for ls in labels]
                self.models[control.name] = (
                    LogisticRegression(C=c, max_iter=2000).fit(x, y) if len(set(y)) > 1 else y[0]
                )

    def _control(self, control, row) -> list[str]:
        model = self.models[control.name]
        if not control.multiple:
            return [model.predict(row)[0] if isinstance(model, LogisticRegression) else model]
        p = {
            label: (m.predict_proba(row)[0, 1] if isinstance(m, LogisticRegression) else float(m))
            for label, m in model.items()
        }
        top = max(control.labels, key=lambda label: p[label])
        return [top] + [label for label in control.labels if label != top and p[label] >= self.threshold]

    def evaluate(self, items: Sequence[GoldItem]) -> Evaluation:
        x = self.features.transform([item.input for item in items])
        predictions = tuple(
            Prediction(
                choices={c.name: self._control(c, x[i]) for c in self.schema.choices},
                score=1.0,
                strict=True,
                source=Source.RANKER,
            )
            for i in range(len(items))
        )
        scores = tuple(score_prediction(self.schema, p, item) for p, item in zip(predictions, items, strict=True))
        return Evaluation(f"linear-c{self.c}-t{self.threshold}", tuple(items), predictions, scores)


def fit_linear(schema: Schema, gold: Sequence[GoldItem], seed: int, fractions=(0.75, 0.25, 0.0)):
    """Choose C (and the threshold) on the validation split; return the model refitted on all gold, and the choice."""
    parts = split(list(gold), seed, fractions)
    multiple = any(c.multiple for c in schema.choices)
    grid = [(c, t) for c in CS for t in (THRESHOLDS if multiple else (0.5,))]
    tried = {}
    for c in CS:
        model = Linear(schema, parts.train, c)
        for t in THRESHOLDS if multiple else (0.5,):
            model.threshold = t
            tried[(c, t)] = model.evaluate(parts.val).mean
    # Ties go to the stronger regularisation, then the higher threshold (the simpler, more conservative model).
    c, t = max(grid, key=lambda ct: (tried[ct], -ct[0], ct[1]))
    choice = {"C": c, "threshold": t, "val": round(tried[(c, t)], 6), "split": parts.sizes()}
    return Linear(schema, gold, c, t), choice


def split_check(data: str, datasets, gold_n: int, test_n: int, seeds) -> dict:
    """What validation can see of the regression the loop proposes: fitted on the loop's training split only, its
    score on that run's validation items beside its score on the test items (and, fitted on all gold, the
    ``linear`` baseline's). No LLM; seconds per dataset."""
    from pathlib import Path

    from bench.optimize import sample
    from optimizer.learning.gold import load_gold

    out: dict = {}
    for name in datasets:
        folder = Path(data) / name
        train = load_gold(folder / "train.jsonl", labels_path=folder / "labels.json")
        test = load_gold(folder / "test.jsonl", labels_path=folder / "labels.json", config=train.label_config)
        items = sample(test.items, test_n, 0)
        for seed in seeds:
            gold = sample(train.items, gold_n, seed)
            parts = split(gold, seed, (0.75, 0.25, 0.0))
            _, choice = fit_linear(train.schema, gold, seed)  # the ``linear`` baseline's C (chosen on this split)
            on_train = Linear(train.schema, parts.train, choice["C"], choice["threshold"])
            out.setdefault(name, {})[str(seed)] = {
                "train": len(parts.train),
                "val": len(parts.val),
                "train_fit_on_val": round(on_train.evaluate(parts.val).mean, 4),
                "train_fit_on_test": round(on_train.evaluate(items).mean, 4),
                "C": choice["C"],
            }
            print(name, seed, json.dumps(out[name][str(seed)]), flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    import argparse

    from bench.optimize import DATASETS, DEFAULT_DATA

    parser = argparse.ArgumentParser(description=split_check.__doc__)
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--datasets", type=lambda s: s.split(","), default=list(DATASETS))
    parser.add_argument("--gold", type=int, default=100)
    parser.add_argument("--test", type=int, default=200)
    parser.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[0, 1, 2])
    parser.add_argument("--out", default="bench/results/issue22-split-check.json")
    args = parser.parse_args(argv)
    results = split_check(args.data, args.datasets, args.gold, args.test, args.seeds)
    with open(args.out, "w", encoding="utf-8") as handle:
        json.dump(results, handle, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
