"""Dataset-level metrics over (predicted, gold) label sets: subset (exact-set) accuracy, micro/macro/per-label F1,
confusions.

Per-item rewards (``verifiers``) drive the loop; these summaries go into reports and into the proposer's feedback,
where "which labels fail, and what are they confused with" matters more than one number.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from optimizer.learning.verifiers import label_set, set_scores

Pair = tuple[Sequence[str] | str | None, Sequence[str] | str]


def _keys(value) -> set[str]:
    return {label.casefold() for label in label_set(value)}


def subset_accuracy(pairs: Sequence[Pair]) -> float:
    """Share of items whose predicted set equals the gold set (single choice: the label is right)."""
    if not pairs:
        return 0.0
    return sum(1 for pred, gold in pairs if _keys(pred) == _keys(gold)) / len(pairs)


def per_label(pairs: Sequence[Pair], labels: Sequence[str]) -> dict[str, dict[str, float]]:
    """Precision, recall, F1 and support of every label in ``labels`` (labels never seen score 0 with support 0)."""
    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    for pred, gold in pairs:
        p, g = _keys(pred), _keys(gold)
        tp.update(p & g)
        fp.update(p - g)
        fn.update(g - p)
    out = {}
    for label in labels:
        key = label.casefold()
        precision = tp[key] / (tp[key] + fp[key]) if tp[key] + fp[key] else 0.0
        recall = tp[key] / (tp[key] + fn[key]) if tp[key] + fn[key] else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out[label] = {"precision": precision, "recall": recall, "f1": f1, "support": tp[key] + fn[key]}
    return out


def micro_f1(pairs: Sequence[Pair]) -> float:
    tp = fp = fn = 0
    for pred, gold in pairs:
        p, g = _keys(pred), _keys(gold)
        tp += len(p & g)
        fp += len(p - g)
        fn += len(g - p)
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def macro_f1(pairs: Sequence[Pair], labels: Sequence[str]) -> float:
    """Mean F1 over the labels that occur in gold or predictions (absent labels would only add zeros)."""
    table = per_label(pairs, labels)
    present = [label for label in labels if table[label]["support"]]
    predicted = {k for pred, _ in pairs for k in _keys(pred)}
    used = [table[label]["f1"] for label in labels if label in present or label.casefold() in predicted]
    return sum(used) / len(used) if used else 0.0


def confusions(pairs: Sequence[Pair], top: int = 5) -> list[tuple[str, str, int]]:
    """Most frequent (gold label, wrongly predicted label) pairs: each missing label against each spurious one."""
    counts: Counter[tuple[str, str]] = Counter()
    for pred, gold in pairs:
        scores = set_scores(pred, gold)
        for want in scores["missing"]:
            for got in scores["spurious"]:
                counts[(want, got)] += 1
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return [(want, got, n) for (want, got), n in ranked[:top]]


def _first(value) -> str:
    labels = label_set(value)
    return labels[0].casefold() if labels else ""


def balanced_accuracy(pairs: Sequence[Pair]) -> float:
    """Mean recall over the gold classes present (single choice): 0.5 for a constant answer on two classes."""
    hits: Counter[str] = Counter()
    seen: Counter[str] = Counter()
    for pred, gold in pairs:
        want = _first(gold)
        seen[want] += 1
        hits[want] += _first(pred) == want
    return sum(hits[c] / seen[c] for c in seen) / len(seen) if seen else 0.0


def cohen_kappa(pairs: Sequence[Pair]) -> float:
    """Agreement beyond chance between prediction and gold (single choice): 1 perfect, 0 chance, < 0 worse.

    A constant answer scores 0 however imbalanced the gold, which is why reward-scoring reports show it.
    """
    n = len(pairs)
    if not n:
        return 0.0
    preds = [_first(p) for p, _ in pairs]
    golds = [_first(g) for _, g in pairs]
    observed = sum(p == g for p, g in zip(preds, golds, strict=True)) / n
    pc, gc = Counter(preds), Counter(golds)
    expected = sum(pc[c] * gc[c] for c in pc) / (n * n)
    if expected >= 1.0:
        return 1.0 if observed >= 1.0 else 0.0
    return (observed - expected) / (1.0 - expected)


def summary(pairs: Sequence[Pair], labels: Sequence[str], multiple: bool) -> dict:
    """The report's numbers for one Choices control."""
    out = {"n": len(pairs), "accuracy": round(subset_accuracy(pairs), 6), "macro_f1": round(macro_f1(pairs, labels), 6)}
    if multiple:
        out["micro_f1"] = round(micro_f1(pairs), 6)
    else:
        out["balanced_accuracy"] = round(balanced_accuracy(pairs), 6)
        out["kappa"] = round(cohen_kappa(pairs), 6)
    return out
