"""The two acceptance tests of the loop: a cheap minibatch gate, and the promotion rule on validation.

Minibatch gate (GEPA): a candidate goes on to a full validation pass only if its summed reward on the step's
training minibatch is strictly higher than its parent's on the same items. A losing candidate costs one minibatch.
A tie says nothing (small models often answer exactly as before), so the search settles it on a second minibatch
of fresh training items, scored for both, and the candidate passes only if it is strictly better there.

Promotion rule: a candidate replaces the champion only if, on the validation items, with per-item differences
``d = reward(candidate) - reward(champion)``:
1. the mean of ``d`` is above ``min_gain``;
2. a one-sided paired bootstrap (``resamples`` resamples of the items, seeded) finds a mean ``d <= 0`` in at most
   ``alpha`` of them, i.e. the gain is unlikely to be resampling noise;
3. the candidate wins at least ``min_net_wins`` more items than it loses, a floor for small validation sets where
   the bootstrap is optimistic.
A tie keeps the champion.

A candidate that answers without the LLM where the champion calls it is judged on more items (validation and,
out of fold, training) with ``cheaper_alpha`` for ``alpha``: see ``search.Search._widened``.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass

from optimizer.learning.evaluation import Evaluation


@dataclass(frozen=True)
class GateRule:
    alpha: float = 0.05
    min_gain: float = 0.0
    min_net_wins: int = 2
    resamples: int = 2000
    # The bootstrap's bar for a candidate that makes no LLM call against a champion that makes some, judged on
    # training (out of fold) and validation items: it must still gain on average and win 2 more items than it
    # loses, but 80 % of resamples suffice (search.Search._widened).
    cheaper_alpha: float = 0.2


@dataclass(frozen=True)
class Decision:
    promote: bool
    mean_diff: float
    p_value: float
    wins: int
    losses: int
    reason: str

    def to_dict(self) -> dict:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def minibatch_gate(parent: Evaluation, candidate: Evaluation) -> tuple[bool, float]:
    """(passed, candidate sum - parent sum) on the same minibatch."""
    diff = sum(candidate.rewards.values()) - sum(parent.rewards.values())
    return diff > 1e-9, diff


def bootstrap_p(diffs: list[float], rng: random.Random, resamples: int) -> float:
    """Share of paired-bootstrap resamples whose mean difference is <= 0 (one-sided)."""
    if not diffs:
        return 1.0
    n = len(diffs)
    worse = 0
    for _ in range(resamples):
        total = sum(diffs[rng.randrange(n)] for _ in range(n))
        if total <= 1e-12:
            worse += 1
    return worse / resamples


def promotion(champion: Evaluation, candidate: Evaluation, rule: GateRule, seed: str) -> Decision:
    """Apply the promotion rule on the items both were scored on (the validation set)."""
    base, new = champion.rewards, candidate.rewards
    ids = [i for i in new if i in base]
    diffs = [new[i] - base[i] for i in ids]
    wins = sum(1 for d in diffs if d > 1e-9)
    losses = sum(1 for d in diffs if d < -1e-9)
    mean_diff = sum(diffs) / len(diffs) if diffs else 0.0
    p = bootstrap_p(diffs, random.Random(seed), rule.resamples) if mean_diff > rule.min_gain else 1.0
    if mean_diff <= rule.min_gain:
        reason = f"no gain on validation (mean difference {mean_diff:+.4f})"
    elif wins - losses < rule.min_net_wins:
        reason = f"too few items won ({wins} won, {losses} lost; need {rule.min_net_wins} more won than lost)"
    elif p > rule.alpha:
        reason = f"gain within noise (bootstrap p={p:.3f} > {rule.alpha})"
    else:
        reason = f"beats the champion: {mean_diff:+.4f} per item, {wins} won / {losses} lost, bootstrap p={p:.3f}"
        return Decision(True, mean_diff, p, wins, losses, reason)
    return Decision(False, mean_diff, p, wins, losses, reason)
