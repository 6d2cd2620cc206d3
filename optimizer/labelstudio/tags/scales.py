"""``Number`` and ``Rating``: one value on a scale, always inside the bounds the label config sets.

- ``Number``: any number within ``min``/``max`` (each optional). A value outside them is dropped, never clamped: a
  clamped 100 for an answer of 250 would look like a confident prediction the model never made.
- ``Rating``: an integer from 1 to ``maxRating`` (default 5, as in Label Studio). ``4.0`` is 4; ``3.5`` or ``0`` is
  outside the domain and dropped.

A number written as a string (``"4"``) or wrapped in a one-item list is accepted; anything else is no answer.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass

from optimizer.labelstudio.tags.base import ObjectRef, TagControl, TagError, attr_number, number_of, to_names

_ONE_NUMBER = re.compile(r"^\s*[^\d+\-.]*?([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)[^\d]*$")


def scalar_of(raw) -> float | None:
    """A number from a JSON value: a number, a numeric string, a string with exactly one number, a one-item list."""
    if isinstance(raw, list) and len(raw) == 1:
        raw = raw[0]
    value = number_of(raw)
    if value is None and isinstance(raw, str):
        match = _ONE_NUMBER.match(raw)
        value = number_of(match.group(1)) if match else None
    return value


def _plain(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


@dataclass(frozen=True)
class NumberControl(TagControl):
    minimum: float | None = None
    maximum: float | None = None

    result_type = "number"

    @classmethod
    def from_element(cls, element: ET.Element, objects: Mapping[str, ObjectRef]) -> NumberControl:
        (to_name,) = to_names(element, objects)
        low, high = attr_number(element, "min"), attr_number(element, "max")
        if low is not None and high is not None and low > high:
            raise TagError(f'Number "{element.get("name")}": min {low:g} is above max {high:g}')
        return cls(name=element.get("name", ""), to_name=to_name, minimum=low, maximum=high)

    def value_schema(self) -> dict:
        schema: dict = {"type": "number"}
        if self.minimum is not None:
            schema["minimum"] = _plain(self.minimum)
        if self.maximum is not None:
            schema["maximum"] = _plain(self.maximum)
        return schema

    def _range(self) -> str:
        if self.minimum is not None and self.maximum is not None:
            return f" from {self.minimum:g} to {self.maximum:g}"
        if self.minimum is not None:
            return f" of at least {self.minimum:g}"
        return f" of at most {self.maximum:g}" if self.maximum is not None else ""

    def spec_line(self) -> str:
        return f'- "{self.name}": a number{self._range()}'

    def example(self):
        return _plain(self.minimum if self.minimum is not None else 0)

    def longest(self):
        return "-" + "9" * 23  # no number the model writes in JSON is longer than this in practice

    def inside(self, value: float) -> bool:
        return (self.minimum is None or value >= self.minimum) and (self.maximum is None or value <= self.maximum)

    def coerce(self, raw) -> tuple[int | float | None, int]:
        value = scalar_of(raw)
        if value is None:
            return None, 1 if raw not in (None, "", []) else 0
        return (_plain(value), 0) if self.inside(value) else (None, 1)

    def results(self, value, data: Mapping, score: float) -> list[dict]:
        return [self.item({"number": value}, score)] if value is not None else []

    def gold(self, items: list[dict], data: Mapping | None) -> int | float | None:
        for item in items:
            value = number_of((item.get("value") or {}).get("number"))
            if value is not None:
                return _plain(value)
        return None


@dataclass(frozen=True)
class RatingControl(TagControl):
    max_rating: int = 5

    result_type = "rating"

    @classmethod
    def from_element(cls, element: ET.Element, objects: Mapping[str, ObjectRef]) -> RatingControl:
        (to_name,) = to_names(element, objects)
        top = attr_number(element, "maxRating")
        top = 5 if top is None else top
        if not float(top).is_integer() or not 1 <= top <= 100:
            raise TagError(f'Rating "{element.get("name")}": maxRating must be an integer from 1 to 100, got {top:g}')
        return cls(name=element.get("name", ""), to_name=to_name, max_rating=int(top))

    def value_schema(self) -> dict:
        return {"type": "integer", "enum": list(range(1, self.max_rating + 1))}

    def spec_line(self) -> str:
        return f'- "{self.name}": a rating, an integer from 1 (lowest) to {self.max_rating} (highest)'

    def example(self):
        return self.max_rating

    def longest(self):
        return self.max_rating

    def coerce(self, raw) -> tuple[int | None, int]:
        value = scalar_of(raw)
        if value is None:
            return None, 1 if raw not in (None, "", []) else 0
        if value.is_integer() and 1 <= value <= self.max_rating:
            return int(value), 0
        return None, 1

    def results(self, value, data: Mapping, score: float) -> list[dict]:
        return [self.item({"rating": value}, score)] if value is not None else []

    def gold(self, items: list[dict], data: Mapping | None) -> int | None:
        for item in items:
            value, _ = self.coerce((item.get("value") or {}).get("rating"))
            if value is not None:
                return value
        return None
