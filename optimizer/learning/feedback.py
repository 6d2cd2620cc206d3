"""Aggregate a minibatch's errors into what a prompt rewriter can act on (../shared/DESIGN.md §6, item 3).

A score alone tells the proposer nothing. This collects, per control: labels most often missed and most often
added wrongly, the top confusion pairs (gold label → predicted label), per-label F1 of the labels involved in
errors, answers with no valid label (parse failures) and LLM errors, plus the few worst items with what was
expected and what came back. :func:`render` turns it into plain text by concatenation only.

Tag controls report the same shape from their verifiers' feedback: spans and taxonomy paths missed and added
wrongly (``PER: Ada``, ``Animal > Cat``), the span F1 per label averaged over the items, and for one-value tags
(number, rating, pairwise) the most common (expected → got) pairs as confusions.
"""

from __future__ import annotations

from collections import Counter

from optimizer.labelstudio.labelconfig import Schema
from optimizer.learning.evaluation import Evaluation
from optimizer.learning.metrics import confusions, per_label
from optimizer.learning.verifiers import ScoreErrorKind

MAX_ITEM_CHARS = 300


def aggregate(schema: Schema, evaluation: Evaluation, worst: int = 3) -> dict:
    controls: dict[str, dict] = {}
    for control in schema.choices:
        pairs, missing, spurious = [], Counter(), Counter()
        for item, prediction, score in zip(evaluation.items, evaluation.predictions, evaluation.scores, strict=True):
            if control.name not in item.answer:
                continue
            pairs.append((prediction.choices.get(control.name, []), item.answer[control.name]))
            verdict = score.verdicts.get(control.name)
            feedback = verdict.feedback if verdict else {}
            missing.update(feedback.get("missing") or [x for x in feedback.get("expected") or [] if x])
            spurious.update(feedback.get("spurious") or ([feedback["got"]] if feedback.get("got") else []))
        involved = sorted(set(missing) | set(spurious))
        table = per_label(pairs, involved)
        controls[control.name] = {
            "missing": missing.most_common(5),
            "spurious": spurious.most_common(5),
            "confusions": confusions(pairs),
            "label_f1": {label: round(table[label]["f1"], 3) for label in involved[:12]},
        }
    for tag in schema.tags:
        controls[tag.name] = _tag_summary(tag.name, evaluation)
    ranked = sorted(
        zip(evaluation.items, evaluation.predictions, evaluation.scores, strict=True),
        key=lambda t: (t[2].reward, t[0].id),
    )
    worst_items = [
        {
            "id": item.id,
            "input": item.input[:MAX_ITEM_CHARS],
            "expected": item.answer,
            "got": prediction.answer,
            "reward": round(score.reward, 3),
        }
        for item, prediction, score in ranked[:worst]
        if score.error or any(v.reward < 1.0 for v in score.verdicts.values())
    ]
    return {
        "n": len(evaluation.items),
        "score": round(evaluation.mean, 4),
        "parse_failures": sum(1 for s in evaluation.scores if s.error and s.error.kind is ScoreErrorKind.UNPARSED),
        "llm_errors": sum(1 for s in evaluation.scores if s.error and s.error.kind is ScoreErrorKind.LLM),
        "controls": controls,
        "worst": worst_items,
    }


def _tag_summary(name: str, evaluation: Evaluation) -> dict:
    missing, spurious, pairs = Counter(), Counter(), Counter()
    f1s: dict[str, list[float]] = {}
    for item, score in zip(evaluation.items, evaluation.scores, strict=True):
        verdict = score.verdicts.get(name) if name in item.answer else None
        if verdict is None:
            continue
        feedback = verdict.feedback
        missing.update(feedback.get("missing") or [])
        spurious.update(feedback.get("spurious") or [])
        if "expected" in feedback and not isinstance(feedback.get("expected"), list):
            pairs[(str(feedback["expected"]), str(feedback.get("got")))] += 1
        for label, f1 in (feedback.get("label_f1") or {}).items():
            f1s.setdefault(label, []).append(float(f1))
    return {
        "missing": missing.most_common(5),
        "spurious": spurious.most_common(5),
        "confusions": [(want, got, n) for (want, got), n in pairs.most_common(5)],
        "label_f1": {label: round(sum(v) / len(v), 3) for label, v in sorted(f1s.items())[:12]},
    }


def _pairs(counts: list) -> str:
    return ", ".join(f"{label} ({n}x)" for label, n in counts) or "none"


def _shown(part) -> str:
    """One answer element for a proposer to read: a label, a span as ``text (LABEL)``, a taxonomy path."""
    if isinstance(part, dict) and "text" in part:
        return f"{part['text']} ({part.get('label', '?')})"
    if isinstance(part, list):
        return " > ".join(str(p) for p in part)
    return str(part)


def answer_text(answer: dict) -> str:
    shown = (f"{k}: {', '.join(_shown(p) for p in v) if isinstance(v, list) else v}" for k, v in answer.items())
    return "; ".join(shown) or "(nothing)"


def as_text(report: dict) -> str:
    """The feedback as plain text for the proposer's message."""
    lines = [
        "Score on " + str(report["n"]) + " training examples: " + str(report["score"]) + " (1.0 is perfect).",
        "Answers with no valid label: "
        + str(report["parse_failures"])
        + "; failed requests: "
        + str(report["llm_errors"])
        + ".",
    ]
    for name, control in report["controls"].items():
        lines.append("Control " + name + ":")
        lines.append("- labels missed most: " + _pairs(control["missing"]))
        lines.append("- labels given wrongly most: " + _pairs(control["spurious"]))
        if control["confusions"]:
            shown = ", ".join(f"{want} → {got} ({n}x)" for want, got, n in control["confusions"])
            lines.append("- confusions (correct → predicted): " + shown)
        if control["label_f1"]:
            lines.append(
                "- F1 of the labels involved: " + ", ".join(f"{k} {v}" for k, v in control["label_f1"].items())
            )
    if report["worst"]:
        lines.append("Worst examples:")
        for item in report["worst"]:
            lines.append('- input: "' + item["input"].replace("\n", " / ") + '"')
            lines.append("  expected: " + answer_text(item["expected"]) + " | got: " + answer_text(item["got"]))
    return "\n".join(lines)
