"""Read the model's raw answer strictly: only labels from a control's own set ever come out.

Order of attempts:
1. a JSON object (the format we ask for, and the one constrained decoding enforces), keys matched to control names;
   an object cut off in the middle (the token cap hit) is salvaged: every member that was complete is kept, and
   so is every complete label of an array that was cut, while a half-written string is dropped;
2. a bare JSON list or string, when the config has exactly one ``Choices``;
3. plain lines (``name: a, b`` or bare labels), for providers without structured output.

A label matches a control's value exactly, or case-insensitively (also against the choice's display text); nothing
fuzzy, because a near miss mapped onto the wrong label is worse than no label. Unknown labels are dropped and
counted, duplicates removed, and a single-choice control keeps at most its first valid label. An empty answer
yields no choice.

Tag controls (spans, numbers, ratings, taxonomies, pairwise) are read by their own module's ``coerce``, which keeps
only values inside the tag's domain; what it drops is counted like an unknown label.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from optimizer.labelstudio.labelconfig import ChoiceControl, Schema
from optimizer.labelstudio.tags import TagControl

_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s*")
_TRAILING = " \t\"'`.;,!"


@dataclass
class Parsed:
    choices: dict[str, list[str]] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)
    values: dict[str, object] = field(default_factory=dict)
    # Character spans in the raw text where each accepted label was found, for logprob scoring.
    spans: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    strict: bool = False
    dropped: int = 0
    # The answer was a JSON object cut off before its end; what was complete in it was kept.
    salvaged: bool = False

    @property
    def nothing_found(self) -> bool:
        """A well-formed answer whose only content is an empty span list: the model found no entity."""
        return self.strict and not self.dropped and any(v == [] for v in self.values.values())

    @property
    def empty(self) -> bool:
        return (
            not any(self.choices.values())
            and not any(t.strip() for t in self.texts.values())
            and not any(v not in (None, []) for v in self.values.values())
        )


class _Matcher:
    """Exact or case-insensitive lookup of a token in one control's label set."""

    def __init__(self, control: ChoiceControl) -> None:
        self.exact = set(control.labels)
        self.folded: dict[str, str] = {}
        for label in control.labels:
            self.folded.setdefault(label.casefold(), label)
        for label, text in control.display:
            self.folded.setdefault(text.casefold(), label)

    def __call__(self, token) -> str | None:
        if not isinstance(token, str | int | float) or isinstance(token, bool):
            return None
        token = str(token)
        if token in self.exact:
            return token
        cleaned = token.strip(_TRAILING)
        if cleaned in self.exact:
            return cleaned
        return self.folded.get(cleaned.casefold())


def _extract_json(raw: str):
    text = raw.strip()
    if text.startswith("```"):
        text = re.sub(r"^```[a-zA-Z]*\s*|\s*```$", "", text)
    for candidate in (text, text[text.find("{") : text.rfind("}") + 1] if "{" in text else ""):
        if not candidate:
            continue
        try:
            return json.loads(candidate)
        except (json.JSONDecodeError, RecursionError):
            continue
    return None


_DECODER = json.JSONDecoder()


def _skip_ws(text: str, at: int) -> int:
    while at < len(text) and text[at] in " \t\r\n":
        at += 1
    return at


def _partial_array(text: str, at: int) -> list:
    """The complete elements at the start of an array whose end was cut off (``at`` is just past the ``[``)."""
    out = []
    while True:
        at = _skip_ws(text, at)
        try:
            value, at = _DECODER.raw_decode(text, at)
        except (json.JSONDecodeError, RecursionError):
            return out
        out.append(value)
        at = _skip_ws(text, at)
        if at >= len(text) or text[at] != ",":
            return out
        at += 1


def salvage_object(raw: str) -> dict | None:
    """The complete members of a JSON object whose end is missing, or None when there is no object to salvage.

    Reads member by member with the standard decoder; the first member that does not decode ends the object. If that
    member is an array, its complete elements are kept (a multiple-choice answer cut after its third label keeps
    three labels); a string or number that was cut is dropped rather than guessed.
    """
    start = raw.find("{")
    if start < 0:
        return None
    out: dict = {}
    at = start + 1
    while True:
        at = _skip_ws(raw, at)
        try:
            key, at = _DECODER.raw_decode(raw, at)
        except (json.JSONDecodeError, RecursionError):
            break
        at = _skip_ws(raw, at)
        if not isinstance(key, str) or at >= len(raw) or raw[at] != ":":
            break
        at = _skip_ws(raw, at + 1)
        try:
            out[key], at = _DECODER.raw_decode(raw, at)
        except (json.JSONDecodeError, RecursionError):
            if raw.startswith("[", at):
                out[key] = _partial_array(raw, at + 1)
            break
        at = _skip_ws(raw, at)
        if at >= len(raw) or raw[at] != ",":
            break
        at += 1
    return out or None


def _find_span(raw: str, label: str, start: int) -> tuple[int, int] | None:
    at = raw.find(label, start)
    if at < 0:
        at = raw.casefold().find(label.casefold(), start)
    return (at, at + len(label)) if at >= 0 else None


def _accept(out: Parsed, raw: str, control: ChoiceControl, tokens, cursor: int = 0) -> None:
    match = _Matcher(control)
    if isinstance(tokens, str | int | float):
        tokens = [tokens]
    if not isinstance(tokens, list):
        tokens = []
    kept: list[str] = out.choices.setdefault(control.name, [])
    spans = out.spans.setdefault(control.name, [])
    for token in tokens:
        label = match(token)
        if label is None:
            if str(token).strip():
                out.dropped += 1
            continue
        if label in kept or (kept and not control.multiple):
            continue
        kept.append(label)
        span = _find_span(raw, str(token).strip(_TRAILING) or label, cursor)
        if span:
            spans.append(span)
            cursor = span[1]


def _key_lookup(obj: dict) -> dict[str, object]:
    return {str(k).casefold(): v for k, v in obj.items()}


def _accept_tag(out: Parsed, tag: TagControl, raw) -> None:
    value, dropped = tag.coerce(raw)
    out.dropped += dropped
    if value is not None:
        out.values[tag.name] = value


# Keys a model may use for the one control of a single-control config instead of the control's name.
_SOLE_KEYS = ("labels", "label", "choices", "choice", "entities", "answer", "value", "rating", "number", "selected")


def parse_answer(schema: Schema, raw: str | None) -> Parsed:
    out = Parsed()
    raw = raw or ""
    if not raw.strip():
        return out
    data = _extract_json(raw)
    if data is None:
        data = salvage_object(raw)
        out.salvaged = data is not None
    if isinstance(data, dict):
        out.strict = True
        keys = _key_lookup(data)
        for control in schema.choices:
            value = keys.get(control.name.casefold())
            if value is None and len(schema.choices) == 1:
                # One Choices: accept the conventional keys a model may use instead of the control's name.
                value = next((keys[k] for k in ("labels", "label", "choices", "choice") if k in keys), None)
            key_at = raw.find(f'"{control.name}"')
            _accept(out, raw, control, value, max(key_at, 0))
        for answer in schema.answers:
            value = keys.get(answer.name.casefold())
            if isinstance(value, str | int | float) and not isinstance(value, bool):
                out.texts[answer.name] = str(value).strip()
        for tag in schema.tags:
            value = keys.get(tag.name.casefold())
            if value is None and len(schema.outputs) == 1:
                value = next((keys[k] for k in _SOLE_KEYS if k in keys), None)
            _accept_tag(out, tag, value)
        return out
    if isinstance(data, list | str) and len(schema.choices) == 1:
        out.strict = isinstance(data, list)
        _accept(out, raw, schema.choices[0], data)
        return out
    if data is not None and len(schema.outputs) == 1 and schema.tags:
        out.strict = True
        _accept_tag(out, schema.tags[0], data)
        return out
    return _parse_lines(schema, raw, out)


def _line_value(text: str):
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return text.strip()


def _parse_lines(schema: Schema, raw: str, out: Parsed) -> Parsed:
    controls = {c.name.casefold(): c for c in schema.choices}
    answers = {a.name.casefold(): a for a in schema.answers}
    tags = {t.name.casefold(): t for t in schema.tags}
    keyed = False
    cursor = 0
    for line in raw.splitlines():
        start = raw.find(line, cursor)
        cursor = start + len(line) if start >= 0 else cursor
        line = _BULLET.sub("", line).strip()
        if not line:
            continue
        name, sep, rest = line.partition(":")
        key = name.strip().strip(_TRAILING).casefold()
        if sep and key in controls:
            _accept(out, raw, controls[key], re.split(r"[,;|]", rest), max(start, 0))
        elif sep and key in answers:
            out.texts[answers[key].name] = rest.strip()
        elif sep and key in tags:
            keyed = True
            _accept_tag(out, tags[key], _line_value(rest))
        elif len(schema.choices) == 1:
            _accept(out, raw, schema.choices[0], re.split(r"[,;|]", line), max(start, 0))
    if not schema.choices and len(schema.answers) == 1 and not out.texts:
        out.texts[schema.answers[0].name] = raw.strip()
    if len(schema.outputs) == 1 and schema.tags and not keyed:
        _accept_tag(out, schema.tags[0], raw.strip())
    return out
