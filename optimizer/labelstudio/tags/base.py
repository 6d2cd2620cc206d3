"""The contract every tag module fulfils, and the helpers they share.

A control's *value* is what the model answers and what gold holds, in plain JSON types, so it can sit in a policy's
demos and in reports unchanged: a list of ``{"label", "text"}`` mentions for spans, a number, an integer rating, a
list of paths (lists of node names) for a taxonomy, ``"left"``/``"right"`` for pairwise.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple


class TagError(ValueError):
    """A control in the label config cannot be used; the message names it and says why."""


class ObjectRef(NamedTuple):
    """What a control needs to know of an object it points at: its tag and the task data key it reads."""

    tag: str
    key: str


def to_names(element: ET.Element, objects: Mapping[str, ObjectRef], *, count: int = 1) -> tuple[str, ...]:
    """The control's ``toName`` objects, checked against the config's objects (``count`` of them)."""
    name = element.get("name") or ""
    if not name:
        raise TagError(f"a {element.tag} control has no name")
    names = tuple(n.strip() for n in (element.get("toName") or "").split(",") if n.strip())
    if len(names) != count or any(n not in objects for n in names):
        want = "one object" if count == 1 else f"{count} objects"
        raise TagError(f'{element.tag} "{name}" must point at {want} of the config, got toName={names!r}')
    return names


@dataclass(frozen=True)
class TagControl:
    """One control the model fills. Subclasses set ``result_type`` and implement the methods below."""

    name: str
    to_name: str

    result_type = ""

    def value_schema(self) -> dict:
        """JSON schema of this control's value, for constrained decoding."""
        raise NotImplementedError

    def spec_line(self) -> str:
        """The format-spec line that tells the model what to write under this control's key."""
        raise NotImplementedError

    def example(self):
        """A placeholder value for the format line of the spec."""
        raise NotImplementedError

    def longest(self):
        """The longest legal value as the model writes it, for the token cap; None when its length is unbounded."""
        raise NotImplementedError

    def shown(self, value):
        """A value (gold or predicted; None when gold lacks it) in the shape the model is asked to write, for demos."""
        return value

    def coerce(self, raw) -> tuple[object | None, int]:
        """(value inside the domain or None, how many proposed items were dropped as outside it)."""
        raise NotImplementedError

    def results(self, value, data: Mapping, score: float) -> list[dict]:
        """Label Studio result items for a value; ``data`` is the task's data (spans need the text)."""
        raise NotImplementedError

    def gold(self, items: list[dict], data: Mapping | None) -> object | None:
        """The value an annotation's result items for this control hold, or None when they hold none."""
        raise NotImplementedError

    def item(self, value: dict, score: float | None = None, to_name: str | None = None) -> dict:
        out = {"from_name": self.name, "to_name": to_name or self.to_name, "type": self.result_type, "value": value}
        if score is not None:
            out["score"] = float(score)
        return out


def number_of(raw) -> float | None:
    """A JSON number, or a string holding exactly one (``"4"``, ``" 3.5 "``); booleans are not numbers."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int | float):
        value = float(raw)
    elif isinstance(raw, str):
        try:
            value = float(raw.strip())
        except ValueError:
            return None
    else:
        return None
    return value if value == value and abs(value) != float("inf") else None


def attr_number(element: ET.Element, attr: str) -> float | None:
    text = element.get(attr)
    if text is None or not text.strip():
        return None
    value = number_of(text)
    if value is None:
        raise TagError(f'{element.tag} "{element.get("name")}": {attr}="{text}" is not a number')
    return value
