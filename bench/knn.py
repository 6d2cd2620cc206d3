"""The simplest thing a user could do with the same gold: copy the labels of the nearest gold items. No LLM.

For each input, the ``k`` gold items nearest by BM25 (the retriever the product uses) vote for their labels, each
vote weighted by the item's retrieval score. A single-choice control takes the top label; a multiple-choice one
takes every label whose share of the votes is at least ``threshold`` (and always the top one). An input that
shares no word with any gold item gets the gold's most frequent label.

``k`` (and, for multi-label controls, the threshold) is chosen on validation exactly as our loop splits the gold
(the same seeded train/validation split), then the index is rebuilt on all gold for the test items: the same data,
the same split, the same held-out test as every other method.

The predictions go through the product's verifiers and metrics (``Evaluation.metrics``), so the figures are
comparable with the LLM methods'.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from optimizer.labelstudio.labelconfig import ChoiceControl, Schema
from optimizer.learning.evaluation import Evaluation, score_prediction
from optimizer.learning.gold import GoldItem
from optimizer.learning.splits import split
from optimizer.learning.verifiers import label_set
from optimizer.serving.modes import Source
from optimizer.serving.predictor import Prediction
from optimizer.serving.retrieval import BM25

KS = (1, 3, 5, 7, 10, 15, 20)
THRESHOLDS = (0.2, 0.35, 0.5)


class KNN:
    def __init__(self, schema: Schema, gold: Sequence[GoldItem], k: int, threshold: float = 0.5) -> None:
        self.schema, self.gold, self.k, self.threshold = schema, list(gold), k, threshold
        self.index = BM25([item.input for item in self.gold])
        self.prior = {c.name: Counter(x for item in self.gold for x in _labels(item, c)) for c in schema.choices}

    def _control(self, control: ChoiceControl, ranked: list[tuple[float, GoldItem]]) -> list[str]:
        votes: Counter[str] = Counter()
        for score, item in ranked:
            for label in _labels(item, control):
                votes[label] += score
        if not votes:
            common = self.prior[control.name].most_common(1)
            return [common[0][0]] if common else []
        order = sorted(votes, key=lambda label: (-votes[label], control.labels.index(label)))
        if not control.multiple:
            return order[:1]
        total = sum(votes.values())
        return [order[0]] + [label for label in order[1:] if votes[label] / total >= self.threshold]

    def predict(self, text: str) -> Prediction:
        scores = self.index.scores(text)
        order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
        ranked = [(scores[i], self.gold[i]) for i in order if scores[i] > 0 and self.gold[i].input != text]
        ranked = ranked[: self.k]
        choices = {c.name: self._control(c, ranked) for c in self.schema.choices}
        return Prediction(choices={k: v for k, v in choices.items() if v}, score=1.0, strict=True, source=Source.RANKER)

    def evaluate(self, items: Sequence[GoldItem]) -> Evaluation:
        predictions = tuple(self.predict(item.input) for item in items)
        scores = tuple(score_prediction(self.schema, p, item) for p, item in zip(predictions, items, strict=True))
        return Evaluation(f"knn-k{self.k}-t{self.threshold}", tuple(items), predictions, scores)


def _labels(item: GoldItem, control: ChoiceControl) -> list[str]:
    return [label for label in label_set(item.answer.get(control.name)) if label in control.labels]


def fit_knn(schema: Schema, gold: Sequence[GoldItem], seed: int, fractions=(0.75, 0.25, 0.0)) -> tuple[KNN, dict]:
    """Choose k (and the threshold) on the validation split, return a KNN over all gold and the choice made."""
    parts = split(list(gold), seed, fractions)
    multiple = any(c.multiple for c in schema.choices)
    grid = [(k, t) for k in KS for t in (THRESHOLDS if multiple else (0.5,))]
    tried = {}
    for k, t in grid:
        tried[(k, t)] = KNN(schema, parts.train, k, t).evaluate(parts.val).mean
    # Ties go to the smaller k, then the higher threshold (the simpler, more conservative model).
    k, t = max(grid, key=lambda kt: (tried[kt], -kt[0], kt[1]))
    choice = {"k": k, "threshold": t, "val": round(tried[(k, t)], 6), "split": parts.sizes()}
    return KNN(schema, gold, k, t), choice
