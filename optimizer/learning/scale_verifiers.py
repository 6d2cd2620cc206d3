"""Verifiers for one value on a scale or a tree: ``Rating``, ``Taxonomy`` and ``Pairwise`` (``Number`` uses
:func:`optimizer.learning.verifiers.numeric_match`, whose tolerance a verifier spec such as ``numeric:0.5`` sets).

- ``rating_distance(top)``: 1 − |predicted − gold| / (top − 1), so on a 5-star scale one star off earns 0.75; no
  answer earns 0.
- ``hierarchical_f1``: F1 over the tree nodes the paths cover, ancestors included: predicting ``Animal > Cat`` for
  gold ``Animal > Dog`` is half right (the shared ``Animal``), not wrong.
- ``side_match``: pairwise accuracy, 1 when the same side was chosen.
"""

from __future__ import annotations

from optimizer.labelstudio.tags.scales import scalar_of
from optimizer.labelstudio.tags.taxonomy import SEPARATOR, ancestors
from optimizer.learning.verdict import Verdict, Verifier


def rating_distance(top: int) -> Verifier:
    def verify(predicted, gold) -> Verdict:
        got, want = scalar_of(predicted), scalar_of(gold)
        if want is None:
            return Verdict(0.0, {"expected": gold, "got": predicted})
        if got is None:
            return Verdict(0.0, {"expected": want, "got": None})
        reward = 1.0 - abs(got - want) / (top - 1) if top > 1 else float(got == want)
        reward = max(0.0, min(1.0, reward))
        return Verdict(reward, {} if reward == 1.0 else {"expected": want, "got": got})

    return verify


def _nodes(paths) -> set[tuple[str, ...]]:
    out: set[tuple[str, ...]] = set()
    for path in paths or []:
        if isinstance(path, list | tuple) and path:
            out |= ancestors(path)
    return out


def hierarchical_f1(predicted, gold) -> Verdict:
    pred, want = _nodes(predicted), _nodes(gold)
    if not pred and not want:
        return Verdict(1.0)
    common = len(pred & want)
    precision = common / len(pred) if pred else 0.0
    recall = common / len(want) if want else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    feedback = {
        "missing": [SEPARATOR.join(p) for p in gold or [] if tuple(p) not in {tuple(x) for x in predicted or []}],
        "spurious": [SEPARATOR.join(p) for p in predicted or [] if tuple(p) not in {tuple(x) for x in gold or []}],
    }
    return Verdict(f1, {k: v for k, v in feedback.items() if v})


def side_match(predicted, gold) -> Verdict:
    ok = predicted is not None and predicted == gold
    return Verdict(1.0 if ok else 0.0, {} if ok else {"expected": gold, "got": predicted})
