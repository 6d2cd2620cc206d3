"""Honest probabilities from a ranker's raw scores: out-of-fold predictions on the pool, and Platt scaling on them.

A model's probabilities on the items it was fitted on say little (a logistic regression on 100 texts fits them
all), so every calibration here is fitted on *out-of-fold* predictions: the pool is dealt into folds, and each item
is scored by a model fitted on the other folds. The same out-of-fold predictions choose the ranker's
hyperparameters and, for multiple choice, its per-label thresholds. Only the pool (the policy's training items)
is ever read; the gate's validation items never are.

Folds are dealt deterministically: items ordered by their rarest label, then by a hash of their text, and dealt
round-robin, so every fold gets its share of each label and a rebuilt ranker gets the same folds.

Platt scaling maps a raw score ``s`` to ``sigmoid(a · logit(s) + b)``, fitted by logistic regression against the
reward the answer earned (soft targets: an F1 of 0.5 counts half right, half wrong). When the outcomes do not
vary (every out-of-fold answer right, say), or the fitted slope is not positive, the slope cannot be estimated:
the raw scores keep slope 1 and only the intercept moves, so the calibrated mean is the smoothed mean reward and
the order of inputs is kept. Scores that do not vary at all give that mean as a constant.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
from sklearn.linear_model import LogisticRegression

EPS = 1e-4


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    return np.log(p / (1 - p))


def fold_ids(texts: Sequence[str], y: np.ndarray, folds: int) -> np.ndarray:
    """Fold index per item (see the module docstring); ``folds`` is clamped to the number of items."""
    n = len(texts)
    folds = max(1, min(folds, n))
    counts = y.sum(axis=0)

    def key(i: int) -> tuple:
        present = np.flatnonzero(y[i])
        rarest = min(((counts[j], j) for j in present), default=(0, -1))
        return (*rarest, hashlib.sha256(texts[i].encode()).hexdigest(), i)

    out = np.empty(n, dtype=int)
    for position, i in enumerate(sorted(range(n), key=key)):
        out[i] = position % folds
    return out


class Platt:
    """``sigmoid(a · logit(s) + b)`` fitted on (score, reward) pairs; a constant when there is nothing to fit."""

    def __init__(self, scores: np.ndarray, rewards: np.ndarray) -> None:
        scores, rewards = np.asarray(scores, dtype=np.float64), np.clip(np.asarray(rewards, dtype=np.float64), 0, 1)
        self.a, self.b = 0.0, 0.0
        mean = (rewards.sum() + 1) / (len(rewards) + 2)
        self.constant: float | None = float(mean)
        if not len(scores) or np.ptp(scores) <= 1e-9:
            return
        if len(rewards) < 4 or not 0 < rewards.sum() < len(rewards):
            self.a, self.b, self.constant = 1.0, _intercept(logit(scores), mean), None
            return
        x = logit(scores).reshape(-1, 1)
        # Soft targets: each item counts as right with weight r and wrong with weight 1 - r.
        xx = np.vstack([x, x])
        yy = np.r_[np.ones(len(x)), np.zeros(len(x))]
        ww = np.r_[rewards, 1 - rewards]
        model = LogisticRegression(C=10.0, max_iter=1000).fit(xx, yy, sample_weight=ww)
        a, b = float(model.coef_[0, 0]), float(model.intercept_[0])
        if a > 1e-6:
            self.a, self.b, self.constant = a, b, None
        else:
            # A non-increasing fit on a hundred noisy items does not show the order is useless, only that it is
            # not measurable here: keep the raw order at slope 1 and move the level to the mean reward.
            self.a, self.b, self.constant = 1.0, _intercept(x.ravel(), mean), None

    def __call__(self, scores) -> np.ndarray:
        scores = np.asarray(scores, dtype=np.float64)
        if self.constant is not None:
            return np.full(scores.shape, self.constant)
        return 1.0 / (1.0 + np.exp(-(self.a * logit(scores) + self.b)))

    def to_dict(self) -> dict:
        return {"a": round(self.a, 6), "b": round(self.b, 6), "constant": self.constant}


def _intercept(x: np.ndarray, mean: float) -> float:
    """The ``b`` with ``mean(sigmoid(x + b)) == mean``, by bisection (the mean is increasing in ``b``)."""
    low, high = -50.0, 50.0
    for _ in range(100):
        middle = (low + high) / 2
        if (1.0 / (1.0 + np.exp(-(x + middle)))).mean() < mean:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def set_f1(chosen: np.ndarray, gold: np.ndarray) -> np.ndarray:
    """Row-wise F1 of boolean label sets (both empty: 1.0), the set verifier's semantics."""
    chosen, gold = chosen.astype(bool), gold.astype(bool)
    hits = (chosen & gold).sum(axis=1)
    size = chosen.sum(axis=1) + gold.sum(axis=1)
    return np.where(size == 0, 1.0, 2 * hits / np.maximum(size, 1))


def choose(probabilities: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Labels at or above their threshold, and always the most likely one (an answer is never empty)."""
    chosen = probabilities >= thresholds
    chosen[np.arange(len(probabilities)), probabilities.argmax(axis=1)] = True
    return chosen


GRID = np.round(np.arange(0.05, 0.96, 0.05), 2)
# A label's own threshold is fitted only when the pool shows it this often; rarer labels keep the shared one.
MIN_POSITIVES = 5


def fit_thresholds(probabilities: np.ndarray, gold: np.ndarray) -> np.ndarray:
    """Per-label thresholds maximising mean out-of-fold item F1: a shared threshold first, then one pass of
    per-label adjustments for labels seen at least ``MIN_POSITIVES`` times (ties keep the shared value)."""
    labels = probabilities.shape[1]

    def score(thresholds: np.ndarray) -> float:
        return float(set_f1(choose(probabilities, thresholds), gold).mean())

    shared = max(GRID, key=lambda t: (score(np.full(labels, t)), -abs(t - 0.5)))
    thresholds = np.full(labels, shared)
    for j in range(labels):
        if gold[:, j].sum() < MIN_POSITIVES:
            continue
        best, best_score = thresholds[j], score(thresholds)
        for t in GRID:
            trial = thresholds.copy()
            trial[j] = t
            value = score(trial)
            if value > best_score + 1e-9:
                best, best_score = t, value
        thresholds[j] = best
    return thresholds
