"""Learned-answer candidates: the rankers, answer modes, thresholds and candidate counts the loop proposes.

None costs a proposer call, and a ranker-mode candidate costs no LLM call at all; a cascade pays only for the
inputs its ranker is unsure of. They are judged like every other candidate: the same minibatch gate, the same
validation pass and promotion rule (``search``).

What the pool's rankers say about themselves out of fold (``serving.ranking``: each training item scored by a model
that did not see it) chooses among them without touching validation:

- **the better ranker**: linear, unless the nearest-neighbour vote's mean out-of-fold reward is higher by more than
  the standard error of the paired difference (a one-standard-error rule: on 75 items a difference of 0.01 is
  noise, and the linear model ranks every label, not just the neighbours'); it answers, and it narrows;
- **τ** (cascade threshold) ladder: the calibrated confidences at which the ranker would answer 75 %, 50 % and
  25 % of the training items. Multiple choice needs no ladder of its own: each label already has its own threshold
  (``calibration.fit_thresholds``), and τ applies to the answer's calibrated expected F1;
- **k** (candidates the LLM chooses among when the ranker is unsure): the smallest k whose out-of-fold top-k holds
  the gold label of at least ``RECALL`` of the training items, at least 2 and at most half the labels.

From a parent:
- answered by the LLM → the better ranker alone; a cascade at the middle τ without demos (a tiny labeller chooses
  among candidates better without them) and with them; the other ranker;
- ranker mode → cascades at each τ; the other ranker;
- cascade → the neighbouring τ on the ladder, twice or half as many candidates, demos toggled, the ranker alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from optimizer.labelstudio.labelconfig import Schema
from optimizer.learning.gold import GoldItem
from optimizer.serving.modes import Mode, RankerKind
from optimizer.serving.policy import Demo, Policy
from optimizer.serving.ranked import answerable
from optimizer.serving.ranking.cache import ranker_for

COVERAGES = (0.75, 0.5, 0.25)
RECALL = 0.8


@dataclass(frozen=True)
class Fitted:
    """The pool's rankers, summarised for proposing: see the module docstring."""

    best: RankerKind
    other: RankerKind
    scores: dict[str, float]
    taus: tuple[float, ...]
    k: int

    def to_dict(self) -> dict:
        return {"best": self.best.value, "scores": self.scores, "taus": list(self.taus), "k": self.k}


def fit(schema: Schema, pool: Sequence[Demo], max_k: int) -> Fitted | None:
    """None when rankers cannot answer this config (it asks for more than Choices) or the pool is empty."""
    if not pool or not answerable(schema):
        return None
    built = {kind: [ranker_for(kind, schema, c, pool) for c in schema.choices] for kind in RankerKind}
    scores = {kind.value: round(float(np.mean([r.oof_score for r in rankers])), 6) for kind, rankers in built.items()}
    best = (
        RankerKind.NEIGHBOURS
        if _clearly_better(built[RankerKind.NEIGHBOURS], built[RankerKind.LINEAR])
        else (RankerKind.LINEAR)
    )
    other = next(kind for kind in RankerKind if kind is not best)
    rankers = built[best]
    return Fitted(best, other, scores, _taus(rankers), _k(schema, rankers, max_k))


def knowable(policy: Policy, schema: Schema, items: Sequence[GoldItem]) -> list[GoldItem]:
    """The items of ``policy``'s pool whose label a fold model could know, for every control (``ranker._seen``).

    Out of fold, an item whose label the pool shows only once can never be answered; at test time, with the whole
    pool behind the ranker, almost every input's label is one it holds (a stratified gold sample covers the label
    set). Judging a ranker on the others would describe a model that knows a fifth of BANKING77's labels."""
    if policy.ranker is None or not answerable(schema):
        return []
    known: set[str] | None = None
    for control in schema.choices:
        ranker = ranker_for(policy.ranker, schema, control, policy.demos)
        seen_mask = getattr(ranker, "seen", ())  # absent for an empty pool
        texts = {text for text, seen in zip(ranker.texts, seen_mask, strict=True) if seen}
        known = texts if known is None else known & texts
    return [item for item in items if item.input in (known or set())]


def _clearly_better(challenger, default) -> bool:
    """The challenger's out-of-fold rewards beat the default's by more than one standard error (paired by item,
    over the items whose label a fold model could know)."""
    diffs = []
    for a, b in zip(challenger, default, strict=True):
        seen = a.seen & b.seen
        diffs.append(a.oof_reward[seen] - b.oof_reward[seen])
    d = np.concatenate(diffs) if diffs else np.zeros(0)
    if len(d) < 2:
        return False
    return float(d.mean()) > float(d.std(ddof=1) / np.sqrt(len(d)))


def _taus(rankers) -> tuple[float, ...]:
    """The ladder of thresholds; an item's confidence is its least confident control's (all must be sure)."""
    by_text: dict[str, list[float]] = {}
    for ranker in rankers:
        for text, confidence in zip(ranker.texts, ranker.oof_confidence, strict=True):
            by_text.setdefault(text, []).append(float(confidence))
    items = [min(v) for v in by_text.values() if len(v) == len(rankers)]
    if not items:
        return ()
    taus = [round(float(np.quantile(items, 1 - c)), 4) for c in COVERAGES]
    return tuple(dict.fromkeys(t for t in taus if 0.0 < t < 1.0))


def _k(schema: Schema, rankers, max_k: int) -> int:
    widest = max(len(c.labels) for c in schema.choices)
    ceiling = max(2, min(max_k, widest // 2))
    for k in range(2, ceiling + 1):
        if all(r.recall_at(k) >= RECALL for r, c in zip(rankers, schema.choices, strict=True) if len(c.labels) > k):
            return k
    return ceiling


def _learned(parent: Policy, pool: tuple[Demo, ...], **changes) -> Policy:
    """``parent`` trained on the whole training pool (a fixed set of a few demos would make a poor ranker)."""
    return replace(parent, demos=pool, meta={}, **changes)


def _shown(policy: Policy, hidden: bool, demo_k: int) -> dict:
    """Demos hidden from the LLM, or retrieved for it (``demo_k`` nearest; the pool is too big to show whole)."""
    if hidden:
        return {"hide_demos": True, "demo_k": 0}
    return {"hide_demos": False, "demo_k": policy.demo_k or min(demo_k, len(policy.demos))}


def _cascade_kind(policy: Policy) -> str:
    demos = "off" if policy.hide_demos or not policy.demo_k else f"k={policy.demo_k}"
    return f"cascade:{policy.ranker} tau={policy.tau:g} k={policy.narrow_k} demos={demos}"


def mode_variants(
    parent: Policy, schema: Schema, pool: tuple[Demo, ...], fitted: Fitted, demo_k: int
) -> list[tuple[str, Policy]]:
    """(kind, policy) learned-answer changes of ``parent``, most promising first (see the module docstring)."""
    best, k, taus = fitted.best, fitted.k, fitted.taus
    narrow = k if max(len(c.labels) for c in schema.choices) > k else 0
    middle = taus[len(taus) // 2] if taus else 0.5
    out: list[tuple[str, Policy]] = []
    if parent.mode is Mode.LLM:
        out.append((f"ranker:{best}", _learned(parent, pool, mode=Mode.RANKER, ranker=best)))
        for hidden in (True, False):
            cascade = _learned(parent, pool, mode=Mode.CASCADE, ranker=best, tau=middle, narrow_k=narrow)
            cascade = replace(cascade, **_shown(cascade, hidden, demo_k))
            out.append((_cascade_kind(cascade), cascade))
        out.append((f"ranker:{fitted.other}", _learned(parent, pool, mode=Mode.RANKER, ranker=fitted.other)))
    elif parent.mode is Mode.RANKER:
        for tau in taus:
            cascade = replace(parent, mode=Mode.CASCADE, tau=tau, narrow_k=narrow, meta={}, **_shown(parent, True, 0))
            out.append((_cascade_kind(cascade), cascade))
        other = fitted.other if parent.ranker is best else best
        out.append((f"ranker:{other}", replace(parent, ranker=other, meta={})))
    else:
        at = taus.index(parent.tau) if parent.tau in taus else len(taus) // 2
        for i in (at - 1, at + 1):
            if 0 <= i < len(taus):
                cascade = replace(parent, tau=taus[i], meta={})
                out.append((_cascade_kind(cascade), cascade))
        widest = max(len(c.labels) for c in schema.choices)
        for size in (parent.narrow_k * 2, parent.narrow_k // 2):
            if parent.narrow_k and 2 <= size < widest:
                cascade = replace(parent, narrow_k=size, meta={})
                out.append((_cascade_kind(cascade), cascade))
        toggled = replace(parent, meta={}, **_shown(parent, not parent.hide_demos, demo_k))
        out.append((_cascade_kind(toggled), toggled))
        out.append((f"ranker:{parent.ranker}", replace(parent, mode=Mode.RANKER, meta={})))
    return out
