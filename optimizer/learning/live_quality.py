"""Live quality: each annotation scored against the prediction its task holds, summed per version, and the live gate.

Pure functions, no Redis: ``optimizer.state.quality`` keeps the counts, ``optimizer.runtime.live`` feeds it.

**One annotation's contribution** (:func:`contribution`) is a set of integer counters, so Redis can add it with
``HINCRBY`` and take it away again exactly when the annotation is updated or deleted:

- ``n`` (1), ``r`` and ``r2``: the item score and its square, in millionths. The item score is what training scores
  an answer with: the control's verifier (set F1 for multiple choice, the label for single choice, span F1, numeric
  match...), or the project's own (Extra params ``verifiers``), weighted equally over the controls the annotation
  answers. Its mean is the "live F1" of a version; its spread gives the gate its noise.
- per control: ``["cn", control]`` and ``["cr", control]`` (its verifier's score);
- per label of a Choices control: ``["tp" | "fp" | "fn", control, label]``; and for a single-choice control one
  cell of the confusion table, ``["cm", control, gold, predicted]`` (``predicted`` is :data:`NO_ANSWER` when the
  prediction left the control empty).

Field names are JSON arrays, so a label may hold any character.

**The live gate** (:func:`live_gate`): a version's mean score over its first N annotations against its parent's
over all of the parent's. Annotations of two versions are different tasks, so the test is unpaired: the drop must
exceed ``z`` standard errors of the difference of the means (one-sided, z = 1.645 for 5 %), with both sides at N
annotations or more. Only flagged, never acted on: rolling back stays a person's decision.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

from optimizer.labelstudio.labelconfig import ChoiceControl, Schema
from optimizer.learning.verifiers import Value, Verifier, combine, label_set

SCALE = 1_000_000
NO_ANSWER = "(no answer)"
Z_ONE_SIDED_5 = 1.645


def key(*parts: str) -> str:
    return json.dumps(list(parts), ensure_ascii=False, separators=(",", ":"))


def contribution(
    schema: Schema, predicted: Mapping[str, Value], gold: Mapping[str, Value], verifiers: Mapping[str, Verifier] | None
) -> dict[str, int] | None:
    """What one annotation (``gold``) adds to its version's counts; None when it answers no control to judge."""
    score = combine(schema, predicted, gold, verifiers=verifiers)
    if not score.verdicts:
        return None
    out = {"n": 1, "r": round(score.reward * SCALE), "r2": round(score.reward * score.reward * SCALE)}
    for name, verdict in score.verdicts.items():
        out[key("cn", name)] = 1
        out[key("cr", name)] = round(verdict.reward * SCALE)
        control = schema.choice(name)
        if not isinstance(control, ChoiceControl):
            continue
        got, want = label_set(predicted.get(name)), label_set(gold[name])
        for label in got:
            out[key("tp" if label in want else "fp", name, label)] = 1
        for label in want:
            if label not in got:
                out[key("fn", name, label)] = 1
        if not control.multiple and want:
            out[key("cm", name, want[0], got[0] if got else NO_ANSWER)] = 1
    return out


@dataclass(frozen=True)
class Moments:
    """Count, sum and sum of squares of item scores (in millionths, as stored)."""

    n: int = 0
    total: int = 0
    squares: int = 0

    @property
    def mean(self) -> float | None:
        return self.total / SCALE / self.n if self.n else None

    @property
    def variance(self) -> float:
        if self.n < 2:
            return 0.0
        mean = self.total / SCALE / self.n
        return max(0.0, (self.squares / SCALE - self.n * mean * mean) / (self.n - 1))


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 6) if b else None


def _f1(tp: int, fp: int, fn: int) -> dict:
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    f1 = _ratio(2 * tp, 2 * tp + fp + fn)
    return {"precision": precision, "recall": recall, "f1": f1}


@dataclass
class LabelFigures:
    label: str
    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def support(self) -> int:
        """Annotations that hold the label (true positives plus false negatives)."""
        return self.tp + self.fn

    def to_dict(self) -> dict:
        return {"label": self.label, "tp": self.tp, "fp": self.fp, "fn": self.fn, "support": self.support,
                **_f1(self.tp, self.fp, self.fn)}  # fmt: skip


@dataclass
class ControlFigures:
    name: str
    kind: str  # "single", "multiple" (Choices) or "other" (scored by its verifier only)
    annotations: int = 0
    total: int = 0
    labels: dict[str, LabelFigures] = field(default_factory=dict)
    confusion: dict[str, dict[str, int]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        labels = sorted(self.labels.values(), key=lambda f: (-f.support, -f.fp, f.label))
        tp, fp, fn = (sum(getattr(f, k) for f in labels) for k in ("tp", "fp", "fn"))
        scored = [f.to_dict()["f1"] for f in labels if f.support or f.fp]
        out = {
            "name": self.name,
            "kind": self.kind,
            "annotations": self.annotations,
            "score": round(self.total / SCALE / self.annotations, 6) if self.annotations else None,
            "labels": [f.to_dict() for f in labels],
            "micro": _f1(tp, fp, fn) if self.kind != "other" else None,
            "macro_f1": round(sum(x or 0.0 for x in scored) / len(scored), 6) if scored else None,
        }
        if self.kind == "single":
            out["confusion"] = _confusion_table(self.confusion)
        return out


def _confusion_table(cells: dict[str, dict[str, int]], limit: int = 15) -> dict:
    """Rows are the annotators' labels, columns the predicted ones, both in one order (most frequent first, so the
    diagonal is the agreement); the ``limit`` most frequent of each are kept."""
    seen: dict[str, int] = {}
    for gold, row in cells.items():
        for got, count in row.items():
            seen[gold] = seen.get(gold, 0) + count
            seen[got] = seen.get(got, 0) + count
    order = sorted(seen, key=lambda label: (label == NO_ANSWER, -seen[label], label))
    predicted = {got for row in cells.values() for got in row}
    rows, columns = [x for x in order if x in cells], [x for x in order if x in predicted]
    shown_rows, shown_columns = rows[:limit], columns[:limit]
    return {
        "labels": shown_rows,
        "predicted": shown_columns,
        "counts": [[cells[g].get(c, 0) for c in shown_columns] for g in shown_rows],
        "omitted": max(0, len(rows) - limit) + max(0, len(columns) - limit),
    }


@dataclass(frozen=True)
class LiveGate:
    """The verdict on one version against its parent; ``flagged`` only when the drop is more than noise."""

    version: str
    parent: str
    annotations: int
    score: float | None
    parent_annotations: int
    parent_score: float | None
    first_n: int
    flagged: bool
    reason: str

    def to_dict(self) -> dict:
        return {k: round(v, 6) if isinstance(v, float) else v for k, v in asdict(self).items()}


def live_gate(
    version: str, window: Moments, parent: str, before: Moments, first_n: int, z: float = Z_ONE_SIDED_5
) -> LiveGate:
    """``window``: the version's first ``first_n`` annotations; ``before``: all of its parent's."""

    def verdict(flagged: bool, reason: str) -> LiveGate:
        return LiveGate(version, parent, window.n, window.mean, before.n, before.mean, first_n, flagged, reason)

    if window.n < first_n:
        return verdict(False, f"waiting for {first_n} annotations ({window.n} so far)")
    if before.n < first_n:
        return verdict(False, f"its parent has too few annotations to compare ({before.n} of {first_n})")
    drop = before.mean - window.mean
    noise = z * math.sqrt(window.variance / window.n + before.variance / before.n)
    if drop > noise and drop > 1e-9:
        below = f"{before.mean:.3f} ({before.n}) by {drop:.3f}, more than noise ({noise:.3f})"
        return verdict(
            True, f"live F1 {window.mean:.3f} over its first {window.n} annotations is below its parent's {below}"
        )
    return verdict(
        False, f"live F1 {window.mean:.3f} against its parent's {before.mean:.3f}: within noise ({noise:.3f})"
    )


@dataclass
class VersionFigures:
    version: str
    first_served: float | None
    overall: Moments
    window: Moments
    controls: dict[str, ControlFigures]
    gate: LiveGate | None = None

    def to_dict(self) -> dict:
        return {
            "version": self.version,
            "first_served": self.first_served,
            "annotations": self.overall.n,
            "f1": round(self.overall.mean, 6) if self.overall.mean is not None else None,
            "sd": round(math.sqrt(self.overall.variance), 6) if self.overall.n > 1 else None,
            "first": {
                "annotations": self.window.n,
                "f1": round(self.window.mean, 6) if self.window.mean is not None else None,
            },
            "controls": [c.to_dict() for c in self.controls.values()],
            "gate": self.gate.to_dict() if self.gate else None,
        }


def figures(version: str, counts: Mapping[str, int], schema: Schema | None, first_served: float | None = None):
    """A version's stored counts → its figures. ``schema`` (when known) says which controls are single choice."""
    overall = Moments(int(counts.get("n", 0)), int(counts.get("r", 0)), int(counts.get("r2", 0)))
    window = Moments(int(counts.get("wn", 0)), int(counts.get("wr", 0)), int(counts.get("wr2", 0)))
    controls: dict[str, ControlFigures] = {}

    def control(name: str) -> ControlFigures:
        if name not in controls:
            choice = schema.choice(name) if schema is not None else None
            kind = "other" if choice is None else ("multiple" if choice.multiple else "single")
            controls[name] = ControlFigures(name, kind)
        return controls[name]

    for raw, amount in sorted(counts.items()):
        if not raw.startswith("["):
            continue
        try:
            kind, name, *rest = json.loads(raw)
        except (ValueError, TypeError):
            continue
        amount = int(amount)
        figures_of = control(name)
        if kind == "cn":
            figures_of.annotations += amount
        elif kind == "cr":
            figures_of.total += amount
        elif kind in ("tp", "fp", "fn") and rest:
            if figures_of.kind == "other":
                figures_of.kind = "multiple"  # a Choices control the current config no longer has
            label = figures_of.labels.setdefault(rest[0], LabelFigures(rest[0]))
            setattr(label, kind, getattr(label, kind) + amount)
        elif kind == "cm" and len(rest) == 2 and amount:
            figures_of.kind = "single"
            row = figures_of.confusion.setdefault(rest[0], {})
            row[rest[1]] = row.get(rest[1], 0) + amount
    return VersionFigures(version, first_served, overall, window, controls)
