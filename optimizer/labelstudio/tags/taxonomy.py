"""``Taxonomy``: paths in a tree of nested ``Choice`` values.

The model picks from the tree's paths written as ``"Eukarya > Human"`` (an enum, so constrained decoding can only emit
real paths). Parsing reads a list of paths (or one path); each may be a path string, exactly or ignoring case and with
``/`` for ``>``, a list of node names, or a bare node name when exactly one node in the tree carries it; anything else
is dropped. With ``leafsOnly="true"`` only leaves are offered and accepted; ``maxUsages`` caps how many paths an answer
keeps (first ones win). Label Studio stores paths as lists of node values: ``{"taxonomy": [["Eukarya", "Human"]]}``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass

from optimizer.labelstudio.tags.base import ObjectRef, TagControl, TagError, to_names

SEPARATOR = " > "
# Enough for real taxonomies; a model listing more is repeating itself until the token cap.
MAX_PATHS = 20


def _walk(element: ET.Element, prefix: tuple[str, ...], out: list[tuple[tuple[str, ...], bool]]) -> None:
    for child in element.findall("Choice"):
        value = child.get("alias") or child.get("value")
        if not value:
            continue
        path = (*prefix, value)
        out.append((path, not child.findall("Choice")))
        _walk(child, path, out)


def ancestors(path) -> set[tuple[str, ...]]:
    """Every prefix of a path, itself included: the nodes hierarchical F1 gives credit for."""
    path = tuple(path)
    return {path[: i + 1] for i in range(len(path))}


@dataclass(frozen=True)
class TaxonomyControl(TagControl):
    paths: tuple[tuple[str, ...], ...] = ()
    max_usages: int = MAX_PATHS

    result_type = "taxonomy"

    @classmethod
    def from_element(cls, element: ET.Element, objects: Mapping[str, ObjectRef]) -> TaxonomyControl:
        (to_name,) = to_names(element, objects)
        name = element.get("name", "")
        if element.get("apiUrl"):
            raise TagError(f'Taxonomy "{name}" loads its tree from apiUrl; only trees in the config are supported')
        nodes: list[tuple[tuple[str, ...], bool]] = []
        _walk(element, (), nodes)
        leafs_only = (element.get("leafsOnly") or "").lower() == "true"
        paths = tuple(dict.fromkeys(path for path, leaf in nodes if leaf or not leafs_only))
        if not paths:
            raise TagError(f'Taxonomy "{name}" has no Choice values')
        try:
            usages = int(element.get("maxUsages") or MAX_PATHS)
        except ValueError:
            raise TagError(f'Taxonomy "{name}": maxUsages must be an integer') from None
        return cls(name=name, to_name=to_name, paths=paths, max_usages=max(1, min(usages, MAX_PATHS)))

    def written(self) -> list[str]:
        return [SEPARATOR.join(path) for path in self.paths]

    def value_schema(self) -> dict:
        item = {"type": "string", "enum": self.written()}
        return {"type": "array", "items": item, "uniqueItems": True, "minItems": 1, "maxItems": self.max_usages}

    def spec_line(self) -> str:
        how = "exactly one path" if self.max_usages == 1 else f"a list of up to {self.max_usages} paths"
        shown = ", ".join(f'"{p}"' for p in self.written())
        return f'- "{self.name}": {how} in the taxonomy, each one of {shown}'

    def example(self):
        return [self.written()[0]]

    def longest(self):
        return sorted(self.written(), key=lambda p: len(p.encode()), reverse=True)[: self.max_usages]

    def shown(self, value):
        return [SEPARATOR.join(path) for path in value] if value else None

    def _lookup(self) -> tuple[dict[str, tuple[str, ...]], dict[str, tuple[str, ...] | None]]:
        by_text = {}
        for path in self.paths:
            by_text.setdefault(SEPARATOR.join(path).casefold(), path)
            by_text.setdefault(SEPARATOR.join(path), path)
        by_node: dict[str, tuple[str, ...] | None] = {}
        for path in self.paths:
            key = path[-1].casefold()
            by_node[key] = path if key not in by_node else None  # None: the name is ambiguous
        return by_text, by_node

    def _path(self, token, by_text, by_node) -> tuple[str, ...] | None:
        if isinstance(token, list) and token and all(isinstance(t, str) for t in token):
            token = SEPARATOR.join(t.strip() for t in token)
        if not isinstance(token, str) or not token.strip():
            return None
        text = SEPARATOR.join(part.strip() for part in token.replace("/", ">").split(">"))
        for candidate in (token.strip(), text):
            hit = by_text.get(candidate) or by_text.get(candidate.casefold())
            if hit:
                return hit
        return by_node.get(token.strip().casefold())

    def coerce(self, raw) -> tuple[list[list[str]] | None, int]:
        if raw is None:
            return None, 0
        tokens = raw if isinstance(raw, list) else [raw]
        by_text, by_node = self._lookup()
        kept: list[tuple[str, ...]] = []
        dropped = 0
        for token in tokens:
            path = self._path(token, by_text, by_node)
            if path is None:
                dropped += 1
            elif path not in kept:
                kept.append(path)
        kept = kept[: self.max_usages]
        return ([list(p) for p in kept] or None), dropped

    def results(self, value, data: Mapping, score: float) -> list[dict]:
        return [self.item({"taxonomy": [list(p) for p in value]}, score)] if value else []

    def gold(self, items: list[dict], data: Mapping | None) -> list[list[str]] | None:
        known = set(self.paths)
        out: list[list[str]] = []
        for item in items:
            for path in (item.get("value") or {}).get("taxonomy") or []:
                if isinstance(path, list) and tuple(path) in known and list(path) not in out:
                    out.append(list(path))
        return out or None
