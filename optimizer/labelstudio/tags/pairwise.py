"""``Pairwise``: which of two objects is preferred, ``"left"`` (the first ``toName``) or ``"right"`` (the second).

The model reads both objects under their names (the renderer labels each ``[name]``), and the format spec says which
name is left and which is right. Parsing accepts ``left``/``right`` in any case, or an object's name, and nothing
else. Label Studio stores the choice with the control's own name as both ``from_name`` and ``to_name``:
``{"type": "pairwise", "value": {"selected": "left"}}``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass

from optimizer.labelstudio.tags.base import ObjectRef, TagControl, to_names

SIDES = ("left", "right")


@dataclass(frozen=True)
class PairwiseControl(TagControl):
    right: str = ""

    result_type = "pairwise"

    @classmethod
    def from_element(cls, element: ET.Element, objects: Mapping[str, ObjectRef]) -> PairwiseControl:
        left, right = to_names(element, objects, count=2)
        return cls(name=element.get("name", ""), to_name=left, right=right)

    def value_schema(self) -> dict:
        return {"type": "string", "enum": list(SIDES)}

    def spec_line(self) -> str:
        return f'- "{self.name}": "left" if [{self.to_name}] is the better one, "right" if [{self.right}] is'

    def example(self):
        return "left"

    def longest(self):
        return "right"

    def coerce(self, raw) -> tuple[str | None, int]:
        if not isinstance(raw, str) or not raw.strip():
            return None, 0 if raw in (None, "") else 1
        token = raw.strip().strip("[]\"'. ").casefold()
        sides = {"left": "left", "right": "right", self.to_name.casefold(): "left", self.right.casefold(): "right"}
        side = sides.get(token)
        return (side, 0) if side else (None, 1)

    def results(self, value, data: Mapping, score: float) -> list[dict]:
        return [self.item({"selected": value}, score, to_name=self.name)] if value in SIDES else []

    def gold(self, items: list[dict], data: Mapping | None) -> str | None:
        for item in items:
            selected = (item.get("value") or {}).get("selected")
            if selected in SIDES:
                return selected
        return None
