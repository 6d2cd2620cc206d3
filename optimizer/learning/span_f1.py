"""Span F1 for ``Labels`` (named entities): exact matches, and partial credit by token overlap, per label.

Spans are compared as (label, text) mentions, not offsets, because that is what the model answers: it names an
entity's words and every occurrence in the text gets the label (``optimizer.labelstudio.tags.spans``). Gold spans
from Label Studio become mentions the same way, so an annotator who labelled "Paris" three times and a model that
named it once agree exactly.

- **exact**: same label and same text (whitespace runs and case ignored) is worth 1;
- **partial**: a predicted mention left unmatched earns, against an unmatched gold mention of the same label, the
  F1 of their word tokens (``"Bank of England"`` for gold ``"the Bank of England"`` earns 6/7); each mention is used
  at most once, best overlaps first.

precision = credit / predicted mentions, recall = credit / gold mentions, F1 their harmonic mean; both empty is a
perfect answer. The reward of :func:`span_f1` is the partial-credit F1; :func:`span_exact_f1` counts exact matches
only. Feedback carries both F1s, the F1 per label, and the missing and spurious mentions as ``label: text``.
"""

from __future__ import annotations

import re
from collections import Counter

from optimizer.labelstudio.tags.spans import mentions_of
from optimizer.learning.verdict import Value, Verdict

_TOKEN = re.compile(r"\w+", re.UNICODE)


def _key(mention: dict) -> tuple[str, str]:
    return mention["label"], " ".join(mention["text"].split()).casefold()


def token_f1(a: str, b: str) -> float:
    left, right = Counter(_TOKEN.findall(a.casefold())), Counter(_TOKEN.findall(b.casefold()))
    common = sum((left & right).values())
    if not common:
        return 0.0
    precision, recall = common / sum(left.values()), common / sum(right.values())
    return 2 * precision * recall / (precision + recall)


def _f1(credit: float, predicted: int, gold: int) -> float:
    if not predicted and not gold:
        return 1.0
    precision = credit / predicted if predicted else 0.0
    recall = credit / gold if gold else 0.0
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def match(predicted, gold) -> tuple[list[tuple[dict, dict, float]], list[dict], list[dict]]:
    """(matched pairs with their credit, unmatched predicted, unmatched gold): exact pairs first, then overlaps."""
    pred, want = mentions_of(predicted), mentions_of(gold)
    gold_keys = {_key(g): g for g in want}
    pairs = [(p, gold_keys[_key(p)], 1.0) for p in pred if _key(p) in gold_keys]
    exact = {_key(p) for p, _, _ in pairs}
    left = [p for p in pred if _key(p) not in exact]
    right = [g for g in want if _key(g) not in exact]
    overlaps = sorted(
        ((token_f1(p["text"], g["text"]), i, j) for i, p in enumerate(left) for j, g in enumerate(right)
         if p["label"] == g["label"]),
        reverse=True,
    )  # fmt: skip
    used_left, used_right = set(), set()
    for credit, i, j in overlaps:
        if credit > 0 and i not in used_left and j not in used_right:
            pairs.append((left[i], right[j], credit))
            used_left.add(i)
            used_right.add(j)
    missing = [g for j, g in enumerate(right) if j not in used_right]
    spurious = [p for i, p in enumerate(left) if i not in used_left]
    return pairs, spurious, missing


def _scores(predicted, gold) -> dict:
    pairs, spurious, missing = match(predicted, gold)
    n_pred, n_gold = len(mentions_of(predicted)), len(mentions_of(gold))
    labels = sorted({m["label"] for m in mentions_of(predicted) + mentions_of(gold)})
    per_label = {}
    for label in labels:
        credit = sum(c for p, _, c in pairs if p["label"] == label)
        count_p = sum(1 for m in mentions_of(predicted) if m["label"] == label)
        count_g = sum(1 for m in mentions_of(gold) if m["label"] == label)
        per_label[label] = round(_f1(credit, count_p, count_g), 6)
    return {
        "exact_f1": _f1(sum(1 for _, _, c in pairs if c == 1.0), n_pred, n_gold),
        "partial_f1": _f1(sum(c for _, _, c in pairs), n_pred, n_gold),
        "label_f1": per_label,
        "missing": [f"{m['label']}: {m['text']}" for m in missing],
        "spurious": [f"{m['label']}: {m['text']}" for m in spurious],
    }


def _verdict(scores: dict, reward_key: str) -> Verdict:
    feedback = {k: v for k, v in scores.items() if k in ("missing", "spurious") and v}
    feedback.update(
        {"exact_f1": round(scores["exact_f1"], 6), "partial_f1": round(scores["partial_f1"], 6)},
        label_f1=scores["label_f1"],
    )
    return Verdict(float(scores[reward_key]), feedback)


def span_f1(predicted: Value | None, gold: Value) -> Verdict:
    """Partial-credit span F1 (exact matches count 1, same-label overlaps their token F1)."""
    return _verdict(_scores(predicted, gold), "partial_f1")


def span_exact_f1(predicted: Value | None, gold: Value) -> Verdict:
    return _verdict(_scores(predicted, gold), "exact_f1")
