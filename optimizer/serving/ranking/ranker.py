"""One control's learned ranker: a raw model, its calibration, and what it says about each input.

Built from a pool of (text, labels) examples (the policy's demos) by :func:`build`:

1. out-of-fold raw scores for every hyperparameter of the kind's small grid (``calibration.fold_ids``), and the
   hyperparameter whose out-of-fold answers earn the most reward (ties: the first, the more regularised);
2. the raw model refitted on the whole pool with it;
3. calibration on the chosen out-of-fold scores. Single choice: the top label's raw score → the probability it is
   right. Multiple choice: each label's raw score → the probability it applies (one calibrator shared by all
   labels: a label seen five times cannot support its own), per-label thresholds on those (``fit_thresholds``),
   and the answer's plug-in expected F1 → the F1 it earns out of fold.

A :class:`Ranking` of an input holds every label best first with its calibrated probability, the answer the
ranker would give, and ``confidence``: the calibrated expected reward of that answer (for single choice, the
probability it is right). It is the prediction's score, and what a cascade compares with its threshold.

**A pool item is never answered from its own annotation.** Asked about a text that is in its pool, the ranker
answers with that item's out-of-fold scores, from a model that did not see it. So scores on training items (the
loop's minibatches) are honest, as retrieval's are (it never shows an input as its own demo).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from optimizer.labelstudio.labelconfig import ChoiceControl
from optimizer.serving.modes import RankerKind
from optimizer.serving.ranking import linear
from optimizer.serving.ranking.calibration import Platt, choose, fit_thresholds, fold_ids, set_f1
from optimizer.serving.ranking.features import Features, PairSplitter
from optimizer.serving.ranking.neighbours import NeighbourModel

FOLDS = 5


GRIDS: dict[RankerKind, tuple[float, ...]] = {
    # Most regularised first: a tie keeps the simpler model.
    RankerKind.LINEAR: (1.0, 10.0, 100.0),  # C: inverse regularisation strength
    RankerKind.NEIGHBOURS: (20, 10, 5, 3, 1),  # k: neighbours that vote
}

Example = tuple[str, tuple[str, ...]]


@dataclass(frozen=True)
class Ranking:
    control: str
    labels: tuple[str, ...]
    probabilities: tuple[float, ...]
    answer: tuple[str, ...]
    confidence: float

    def top(self, k: int) -> tuple[str, ...]:
        return self.labels[:k]


def _final(kind: RankerKind, value: float, multiple: bool, balanced: bool, pair: PairSplitter | None) -> Callable:
    if kind is RankerKind.LINEAR:
        return lambda texts, y: linear.fit(texts, y, multiple, float(value), balanced=balanced, pair=pair)
    return lambda texts, y: NeighbourModel(texts, y, multiple, int(value))


def _prior(y: np.ndarray, multiple: bool) -> np.ndarray:
    """Smoothed label frequencies: a distribution for single choice, per-label shares for multiple choice."""
    n, labels = y.shape
    if multiple:
        return (y.sum(axis=0) + 0.5) / (n + 1)
    return (y.sum(axis=0) + 1e-3) / (n + 1e-3 * labels)


def _seen(y: np.ndarray, folds: np.ndarray, multiple: bool) -> np.ndarray:
    """Per item, whether its (single-choice) label occurs in the other folds, so that a fold model could know it.

    With 100 items over 77 intents most labels occur once: out of fold they are never known, and scoring or
    calibrating on them would describe a model that knows a fifth of the labels, not the one refitted on the pool.
    Multiple-choice labels are shared widely enough that every item counts.
    """
    if multiple:
        return np.ones(len(y), dtype=bool)
    out = np.zeros(len(y), dtype=bool)
    for f in np.unique(folds):
        inside = folds == f
        known = y[~inside].sum(axis=0) > 0
        out[inside] = (y[inside] @ known) > 0
    return out


def out_of_fold(kind: RankerKind, texts: Sequence[str], y: np.ndarray, folds: np.ndarray, prior: np.ndarray, **options):
    """Per hyperparameter of the kind's grid, each item's raw scores from a model fitted on the other folds (the
    prior when there are no other items). A fold's features are computed once and shared by the whole grid."""
    multiple, balanced, pair = options["multiple"], options["balanced"], options["pair"]
    grid = GRIDS[kind]
    out = {value: np.tile(prior, (len(texts), 1)) for value in grid}
    for f in np.unique(folds):
        held, rest = np.flatnonzero(folds == f), np.flatnonzero(folds != f)
        if not len(rest):
            continue
        train, unseen = [texts[i] for i in rest], [texts[i] for i in held]
        if kind is RankerKind.LINEAR:
            features = Features(train, pair)
            x, x_held = features.transform(train), features.transform(unseen)
            model = None
            for value in sorted(grid):
                model = linear.LinearModel(features, x, y[rest], multiple, value, balanced=balanced, warm=model)
                out[value][held] = model.score_matrix(x_held)
        else:
            for value in grid:
                out[value][held] = NeighbourModel(train, y[rest], multiple, int(value)).scores(unseen)
    return out


class ControlRanker:
    """Built by :func:`build`; ranks one control's labels for any input."""

    def __init__(self, kind: RankerKind, control: ChoiceControl, examples: Sequence[Example], **options) -> None:
        self.kind, self.control = kind, control
        self.balanced: bool = options.get("balanced", False)
        pair: PairSplitter | None = options.get("pair")
        labels = control.labels
        index = {label: j for j, label in enumerate(labels)}
        self.texts = [text for text, _ in examples]
        y = np.zeros((len(examples), len(labels)))
        for i, (_, chosen) in enumerate(examples):
            for label in chosen if control.multiple else chosen[:1]:
                y[i, index[label]] = 1.0
        self.y = y
        n = len(examples)
        self.prior = _prior(y, control.multiple)
        self.model = None
        self.param: float | None = None
        self.oof_reward = np.zeros(0)
        # The selection metric of the chosen hyperparameter: mean out-of-fold reward where the label was knowable.
        self.oof_score = 0.0
        self.oof_confidence = np.zeros(0)
        self._oof: dict[str, np.ndarray] = {}
        self.thresholds = np.full(len(labels), 0.5)
        self.label_calibrator = self.item_calibrator = Platt(np.zeros(0), np.zeros(0))
        if not n:
            return
        folds = fold_ids(self.texts, y, FOLDS)
        self.seen = _seen(y, folds, control.multiple)
        # Good-Turing: the chance that a new input's label is one the pool never shows is the share of labels seen
        # exactly once. No model can be right on those, so single-choice confidences are scaled by the rest.
        self.coverage = 1.0 if control.multiple else 1.0 - float((y.sum(axis=0) == 1).sum()) / n
        grid = out_of_fold(
            kind, self.texts, y, folds, self.prior, multiple=control.multiple, balanced=self.balanced, pair=pair
        )
        best = None
        for value, scores in grid.items():
            reward = self._raw_reward(scores)
            if best is None or reward > best[0] + 1e-9:
                best = (reward, value, scores)
        self.oof_score, self.param, scores = best
        self.model = _final(kind, self.param, control.multiple, self.balanced, pair)(self.texts, y)
        self._calibrate(scores)
        for text, row in zip(self.texts, scores, strict=True):
            self._oof.setdefault(text, row)

    # --- fitting -------------------------------------------------------------------------------------------------

    def _raw_reward(self, scores: np.ndarray) -> float:
        """Mean out-of-fold reward over the items a fold model could know the label of (see :func:`_seen`)."""
        y, seen = self.y[self.seen], scores[self.seen]
        if not len(y):
            return 0.0
        if not self.control.multiple:
            return float(y[np.arange(len(seen)), seen.argmax(axis=1)].mean())
        return float(set_f1(choose(seen, fit_thresholds(seen, y)), y).mean())

    def _calibrate(self, scores: np.ndarray) -> None:
        y = self.y
        if self.control.multiple:
            self.label_calibrator = Platt(scores.ravel(), y.ravel())
            probabilities = self.label_calibrator(scores)
            self.thresholds = fit_thresholds(probabilities, y)
            chosen = choose(probabilities, self.thresholds)
            self.oof_reward = set_f1(chosen, y)
            self.item_calibrator = Platt(self._expected_f1(probabilities, chosen), self.oof_reward)
            self.oof_confidence = self.item_calibrator(self._expected_f1(probabilities, chosen))
        elif len(self.control.labels) == 2:
            # Two labels: calibrate the second label's probability itself, so both labels' probabilities are one
            # coherent pair. (A top-label calibration would let an item answered "0" with low confidence carry a
            # higher probability of "1" than an item answered "1".) The answer stays the model's own decision,
            # which with balanced class weights is the one balanced accuracy rewards.
            top = scores.argmax(axis=1)
            self.oof_reward = y[np.arange(len(scores)), top]
            self.label_calibrator = Platt(scores[:, 1], y[:, 1])
            second = self.label_calibrator(scores[:, 1])
            self.oof_confidence = np.where(top == 1, second, 1 - second)
        else:
            top = scores.argmax(axis=1)
            self.oof_reward = y[np.arange(len(scores)), top]
            seen = self.seen
            self.item_calibrator = Platt(scores.max(axis=1)[seen], self.oof_reward[seen])
            self.oof_confidence = self.coverage * self.item_calibrator(scores.max(axis=1))
        self.oof_ranks = self._gold_ranks(scores)

    @staticmethod
    def _expected_f1(probabilities: np.ndarray, chosen: np.ndarray) -> np.ndarray:
        """The answer's expected F1 if each label applies independently with its probability, in the usual plug-in
        form ``2 · Σ_chosen p / (|chosen| + Σ_all p)`` (expected hits over expected sizes). It ranks answers by how
        likely they are to score, which the product of every label decision's probability did not (on
        GoEmotions-Ekman, AUROC against correctness 0.58-0.71 against 0.44-0.59)."""
        hits = np.where(chosen, probabilities, 0.0).sum(axis=1)
        return 2 * hits / (chosen.sum(axis=1) + probabilities.sum(axis=1))

    def _gold_ranks(self, scores: np.ndarray) -> np.ndarray:
        """Per pool item, the out-of-fold rank (1-based) of its worst-ranked gold label: top-k holds all its gold
        labels exactly when this is <= k."""
        order = np.argsort(-scores, axis=1, kind="stable")
        position = np.empty_like(order)
        position[np.arange(len(order))[:, None], order] = np.arange(order.shape[1])[None, :] + 1
        return np.where(self.y > 0, position, 0).max(axis=1)

    # --- answering -----------------------------------------------------------------------------------------------

    def recall_at(self, k: int) -> float:
        """Share of pool items whose gold labels all rank within the top ``k`` out of fold, among those whose label
        a fold model could know (an unseen label is in no top-k but by chance)."""
        ranks = self.oof_ranks[self.seen] if len(self.oof_ranks) else self.oof_ranks
        return float((ranks <= k).mean()) if len(ranks) else 0.0

    def rank_many(self, texts: Sequence[str]) -> list[Ranking]:
        if self.model is None:
            uniform = tuple(1 / len(self.control.labels) for _ in self.control.labels)
            return [Ranking(self.control.name, self.control.labels, uniform, (), 0.0) for _ in texts]
        unseen = [t for t in dict.fromkeys(texts) if t not in self._oof]
        fresh = dict(zip(unseen, self.model.scores(unseen), strict=True)) if unseen else {}
        return [self._ranking(self._oof[t] if t in self._oof else fresh[t]) for t in texts]

    def rank(self, text: str) -> Ranking:
        return self.rank_many([text])[0]

    def _ranking(self, raw: np.ndarray) -> Ranking:
        labels = self.control.labels
        if self.control.multiple:
            p = self.label_calibrator(raw[None, :])[0]
            chosen = choose(p[None, :], self.thresholds)
            confidence = float(self.item_calibrator(self._expected_f1(p[None, :], chosen))[0])
            answer = [labels[j] for j in np.flatnonzero(chosen[0])]
        elif len(labels) == 2:
            second = float(self.label_calibrator(raw[1:2])[0])
            p = np.array([1 - second, second])
            answer = [labels[int(raw.argmax())]]
            confidence = float(p[int(raw.argmax())])
        else:
            top = int(raw.argmax())
            confidence = self.coverage * float(self.item_calibrator(raw[top : top + 1])[0])
            rest = max(1e-12, 1.0 - float(raw[top]))
            p = np.where(np.arange(len(raw)) == top, confidence, (1 - confidence) * raw / rest)
            if raw[top] >= 1.0 - 1e-12:  # nothing left to spread by: the others share what is left evenly
                p = np.where(np.arange(len(raw)) == top, confidence, (1 - confidence) / max(1, len(raw) - 1))
            answer = [labels[top]]
        order = sorted(range(len(labels)), key=lambda j: (-p[j], j))
        answer.sort(key=lambda label: order.index(labels.index(label)))
        return Ranking(
            self.control.name,
            tuple(labels[j] for j in order),
            tuple(round(float(p[j]), 6) for j in order),
            tuple(answer),
            round(confidence, 6),
        )

    def describe(self) -> dict:
        """What the ranker is and how it did out of fold, for run reports."""
        return {
            "kind": self.kind.value,
            "control": self.control.name,
            "pool": len(self.texts),
            "param": self.param,
            "oof_score": round(self.oof_score, 6),
        }


def build(kind: RankerKind, control: ChoiceControl, examples: Sequence[Example], **options) -> ControlRanker:
    # One BLAS thread: a web or RQ worker building a ranker must not take every core from its neighbours.
    with threadpool_limits(1), warnings.catch_warnings():
        # scikit-learn warns when labels outnumber half the items (77 intents, 100 examples): that is the setting.
        warnings.filterwarnings("ignore", message="The number of unique classes", category=UserWarning)
        return ControlRanker(kind, control, examples, **options)
