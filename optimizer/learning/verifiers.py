"""Verifiers: pure, deterministic functions that score one answer against gold, with feedback a proposer can use.

Every verifier returns a :class:`Verdict`: a reward in [0, 1] plus per-item feedback (missing and spurious labels,
expected and got). The loop only ever looks at rewards; the proposer only ever reads feedback.

Choices
- ``set_f1``: the seed's semantics. coverage = correct / gold, precision = correct / predicted, F1 their harmonic
  mean. Both sets empty is a perfect answer (precision = coverage = 1.0); an empty prediction for a non-empty gold
  has precision 0, and a non-empty prediction for an empty gold has coverage 1.0 (nothing was missed) but
  precision 0, so its F1 is 0 either way.
- ``first_label`` (alias ``accuracy``): single choice; the first predicted label equals the gold label. Over a
  dataset its mean is single-label accuracy; :mod:`.metrics` reports exact-set (subset) accuracy beside it.

Labels are compared as sets, case-insensitively: duplicates count once, and ``"Billing"`` equals ``"billing"``
(gold written by hand rarely matches a config's case; parsing already maps case the same way, never fuzzily).

Tags (modules of their own): ``span_f1`` / ``span_exact`` for ``Labels`` (:mod:`.span_f1`), ``numeric`` for
``Number``, rating distance, ``hierarchical_f1`` for ``Taxonomy`` and ``side`` for ``Pairwise``
(:mod:`.scale_verifiers`).

Free text
- ``exact``: identical after stripping surrounding whitespace.
- ``normalised``: case, inner whitespace and trailing punctuation ignored.
- ``numeric``: the last number in the answer equals the gold number within a tolerance ("x = 2" matches "2",
  "2.0" matches "2").
- ``regex``: the answer must match a pattern; with a capture group, the captured text must also equal the gold
  (normalised). Patterns come from a project admin's Extra params and run in the RQ worker on every gold item, so
  they run on RE2 (``google-re2``), whose matching time is linear in the answer: ``(a+)+$`` on a long answer, which
  pins Python's backtracking ``re`` for minutes, takes microseconds. What RE2 cannot compile (backreferences,
  lookaround) and patterns over :data:`MAX_PATTERN_LENGTH` characters are refused with :class:`PatternRefused`.
- ``auto`` (the default for a ``TextArea``): numeric when the gold is a number, otherwise normalised.

:func:`verifier_for` picks one per control, and :func:`combine` weights them when a config has several controls.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

import re2

from optimizer.labelstudio.labelconfig import ChoiceControl, Schema
from optimizer.labelstudio.tags import NumberControl, PairwiseControl, RatingControl, SpanControl, TaxonomyControl
from optimizer.learning.scale_verifiers import hierarchical_f1, rating_distance, side_match
from optimizer.learning.span_f1 import span_exact_f1, span_f1
from optimizer.learning.verdict import Value, Verdict, Verifier

__all__ = ["Value", "Verdict", "Verifier"]


def label_set(value: Value | None) -> list[str]:
    """Labels in first-seen order, duplicates and case variants counted once."""
    if value is None:
        return []
    items = [value] if isinstance(value, str) else list(value)
    seen: dict[str, str] = {}
    for item in items:
        text = str(item).strip()
        if text:
            seen.setdefault(text.casefold(), text)
    return list(seen.values())


def set_scores(predicted: Value | None, gold: Value) -> dict[str, float | list[str]]:
    """Precision, coverage and F1 of one answer, plus the missing and spurious labels."""
    pred, want = label_set(predicted), label_set(gold)
    pred_keys, want_keys = {p.casefold() for p in pred}, {g.casefold() for g in want}
    correct = len(pred_keys & want_keys)
    if not pred and not want:
        precision = coverage = 1.0
    else:
        precision = correct / len(pred) if pred else 0.0
        coverage = correct / len(want) if want else 1.0
    f1 = 2 * precision * coverage / (precision + coverage) if precision + coverage else 0.0
    return {
        "precision": precision,
        "coverage": coverage,
        "f1": f1,
        "missing": [g for g in want if g.casefold() not in pred_keys],
        "spurious": [p for p in pred if p.casefold() not in want_keys],
    }


def set_f1(predicted: Value | None, gold: Value) -> Verdict:
    scores = set_scores(predicted, gold)
    feedback = {k: v for k, v in scores.items() if k in ("missing", "spurious") and v}
    feedback.update({k: round(float(scores[k]), 6) for k in ("precision", "coverage")})
    return Verdict(float(scores["f1"]), feedback)


def first_label_match(predicted: Value | None, gold: Value) -> Verdict:
    pred, want = label_set(predicted), label_set(gold)
    got = pred[0] if pred else None
    ok = got is not None and got.casefold() in {g.casefold() for g in want}
    return Verdict(1.0 if ok else 0.0, {} if ok else {"expected": want, "got": got})


# --- free text ------------------------------------------------------------------------------------------------------

_SPACE = re.compile(r"\s+")
# Thousands separators only in groups of three ("1,000"), so "1,5" is two numbers, not fifteen.
_NUMBER = re.compile(r"[-+]?(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?")


def _text(value: Value | None) -> str:
    if value is None:
        return ""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return repr(value)
    return value if isinstance(value, str) else " ".join(str(v) for v in value)


def normalise(text: str) -> str:
    return _SPACE.sub(" ", text.casefold()).strip().strip(" .;:!?\"'`")


def exact_match(predicted: Value | None, gold: Value) -> Verdict:
    got, want = _text(predicted).strip(), _text(gold).strip()
    return Verdict(1.0 if got == want else 0.0, {} if got == want else {"expected": want, "got": got})


def normalised_match(predicted: Value | None, gold: Value) -> Verdict:
    got, want = _text(predicted), _text(gold)
    ok = normalise(got) == normalise(want)
    return Verdict(1.0 if ok else 0.0, {} if ok else {"expected": want.strip(), "got": got.strip()})


def parse_number(text: str) -> float | None:
    """The last number in ``text`` ("x = 2" → 2.0, "1,000.5" → 1000.5), or None."""
    found = _NUMBER.findall(text or "")
    if not found:
        return None
    try:
        value = float(found[-1].replace(",", ""))
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def numeric_match(tolerance: float = 1e-6) -> Verifier:
    """Equal within ``tolerance``, absolute or relative to the gold value, whichever is larger."""

    def verify(predicted: Value | None, gold: Value) -> Verdict:
        want, got = parse_number(_text(gold)), parse_number(_text(predicted))
        ok = want is not None and got is not None and abs(got - want) <= tolerance * max(1.0, abs(want))
        return Verdict(1.0 if ok else 0.0, {} if ok else {"expected": _text(gold).strip(), "got": got})

    return verify


# A verifier's pattern is a rule a person types; longer than this, it is data or an attack, and RE2's program for it
# grows with its length (RE2's own memory cap refuses blown-up repetitions such as ``a{1000}{1000}``).
MAX_PATTERN_LENGTH = 500
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # RE2 would print every refused pattern to stderr; the refusal carries the reason


class PatternRefused(ValueError):
    """A ``regex:`` pattern this backend will not run: too long, or not expressible in RE2 (linear time)."""


def compile_pattern(pattern: str):
    """``pattern`` compiled by RE2, or :class:`PatternRefused` saying why not."""
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise PatternRefused(
            f"the regex is {len(pattern)} characters long; at most {MAX_PATTERN_LENGTH} characters are allowed"
        )
    try:
        return re2.compile(pattern, _RE2_OPTIONS)
    except UnicodeEncodeError:  # a lone surrogate: valid in a JSON string, not in the UTF-8 RE2 reads
        raise PatternRefused(f"{pattern!r} is not valid UTF-8 text") from None
    except re2.error as exc:
        reason = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise PatternRefused(
            f"{pattern!r} is not a regular expression RE2 can run ({reason}); verifiers run in linear time, so "
            "backreferences and lookaround are not supported"
        ) from None


def regex_match(pattern: str) -> Verifier:
    compiled = compile_pattern(pattern)

    def verify(predicted: Value | None, gold: Value) -> Verdict:
        # RE2 reads UTF-8: a lone surrogate in an answer becomes "?" rather than an error that stops the run.
        got = _text(predicted).encode("utf-8", "replace").decode("utf-8")
        match = compiled.search(got)
        if match is None:
            return Verdict(0.0, {"expected": f"an answer matching {pattern}", "got": got.strip()})
        if compiled.groups and normalise(match.group(1) or "") != normalise(_text(gold)):
            return Verdict(0.0, {"expected": _text(gold).strip(), "got": match.group(1)})
        return Verdict(1.0)

    return verify


def auto_text(predicted: Value | None, gold: Value) -> Verdict:
    if parse_number(_text(gold)) is not None and _NUMBER.fullmatch(_text(gold).strip()):
        return numeric_match()(predicted, gold)
    return normalised_match(predicted, gold)


# --- selection and combination ---------------------------------------------------------------------------------------

NAMED: dict[str, Verifier] = {
    "set_f1": set_f1,
    "first_label": first_label_match,
    "accuracy": first_label_match,
    "exact": exact_match,
    "normalised": normalised_match,
    "numeric": numeric_match(),
    "auto": auto_text,
    "span_f1": span_f1,
    "span_exact": span_exact_f1,
    "hierarchical_f1": hierarchical_f1,
    "side": side_match,
}


def named(spec: str) -> Verifier:
    """A verifier from a short spec: a name above, ``numeric:<tolerance>`` or ``regex:<pattern>``."""
    name, _, arg = spec.partition(":")
    if name == "numeric" and arg:
        return numeric_match(float(arg))
    if name == "regex" and arg:
        return regex_match(arg)
    if name in NAMED and not arg:
        return NAMED[name]
    raise ValueError(f"unknown verifier {spec!r}; use one of {', '.join(NAMED)}, numeric:<tol> or regex:<pattern>")


def verifier_for(schema: Schema, name: str) -> Verifier:
    """The default verifier for one control: set F1 for multiple choice, first-label match for single, auto for
    text, and per tag: span F1 with partial credit, numeric match, rating distance, hierarchical F1, side match."""
    control = schema.choice(name)
    if isinstance(control, ChoiceControl):
        return set_f1 if control.multiple else first_label_match
    tag = schema.tag(name)
    if isinstance(tag, SpanControl):
        return span_f1
    if isinstance(tag, NumberControl):
        return NAMED["numeric"]
    if isinstance(tag, RatingControl):
        return rating_distance(tag.max_rating)
    if isinstance(tag, TaxonomyControl):
        return hierarchical_f1
    if isinstance(tag, PairwiseControl):
        return side_match
    return auto_text


class ScoreErrorKind(StrEnum):
    """Why an item scored as it did without a usable answer: the LLM failed, or its answer held no valid label."""

    LLM = "llm"
    UNPARSED = "unparsed"


@dataclass(frozen=True)
class ScoreError:
    kind: ScoreErrorKind
    detail: str

    def __str__(self) -> str:
        return f"{self.kind.value}: {self.detail}"


@dataclass(frozen=True)
class ItemScore:
    """One item's reward (weighted over the controls the gold answers) and each control's verdict."""

    reward: float
    verdicts: dict[str, Verdict]
    error: ScoreError | None = None
    # The hard verifier's reward (class-weighted like ``reward``) when ``reward`` is something else (soft).
    hard: float | None = None

    @property
    def hard_reward(self) -> float:
        return self.reward if self.hard is None else self.hard


def combine(
    schema: Schema,
    predicted: Mapping[str, Value],
    gold: Mapping[str, Value],
    *,
    verifiers: Mapping[str, Verifier] | None = None,
    weights: Mapping[str, float] | None = None,
) -> ItemScore:
    """Weighted mean of per-control rewards over the controls the gold answers (others are not judged)."""
    verdicts: dict[str, Verdict] = {}
    total = weight_sum = 0.0
    for name in schema.outputs:
        if name not in gold:
            continue
        verify = (verifiers or {}).get(name) or verifier_for(schema, name)
        verdict = verify(predicted.get(name), gold[name])
        weight = float((weights or {}).get(name, 1.0))
        verdicts[name] = verdict
        total += weight * verdict.reward
        weight_sum += weight
    return ItemScore(total / weight_sum if weight_sum else 0.0, verdicts)


def mean(values: Iterable[float]) -> float:
    values = list(values)
    return sum(values) / len(values) if values else 0.0
