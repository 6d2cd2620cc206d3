"""``Labels`` on a ``Text`` object: named-entity spans with exact character offsets.

The model never sees or writes offsets: it names each entity by copying its words from the text and gives it a label
(``{"text": "Ada Lovelace", "label": "PER"}``). Offsets are computed here, against the task's own text, so they are
right by construction. The rule, for every mention the model names:

- **every occurrence** of the mention in the text gets the label, as annotators label every occurrence of an entity;
- an occurrence is found exactly first; only if there is none, ignoring case; whitespace inside a mention matches any
  run of whitespace (a mention written on one line still finds a name broken across lines);
- an occurrence must not cut a word: a mention that starts (ends) with a letter or digit is not matched right after
  (before) another one, so ``"Al"`` is not found inside ``"Albert"``;
- a mention that occurs nowhere yields no span (it is never placed approximately);
- spans may overlap (``"New York"`` as LOC inside ``"New York Times"`` as ORG): Label Studio renders nested and
  overlapping regions, so both are kept; the same (start, end, label) is emitted once.

Offsets are Python string indices, i.e. Unicode code points, and ``value.text`` is always ``text[start:end]``. HTML
in a ``Text`` value is plain characters to Label Studio (it shows the markup), so offsets count the markup too.
Label Studio's editor measures offsets in UTF-16 units, so in a text with emoji or other characters outside the
Basic Multilingual Plane before a span, the highlight may appear shifted in the editor (Label Studio issue #4988);
the stored offsets and ``text`` stay the ones Python and Label Studio's exports agree on.
"""

from __future__ import annotations

import hashlib
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass

from optimizer.labelstudio.tags.base import ObjectRef, TagControl, TagError, to_names

# More mentions than this in one answer is a model repeating itself until the token cap, not a text's entities.
MAX_MENTIONS = 40


def _pattern(mention: str, flags: int) -> re.Pattern | None:
    words = mention.split()
    if not words:
        return None
    body = r"\s+".join(re.escape(w) for w in words)
    head = r"(?<!\w)" if re.match(r"\w", words[0]) else ""
    tail = r"(?!\w)" if re.search(r"\w$", words[-1]) else ""
    return re.compile(head + body + tail, flags)


def locate(text: str, mention: str) -> list[tuple[int, int]]:
    """Every occurrence of ``mention`` in ``text`` as (start, end), by the rule in the module docstring."""
    for flags in (0, re.IGNORECASE):
        pattern = _pattern(mention, flags)
        if pattern is None:
            return []
        found = [(m.start(), m.end()) for m in pattern.finditer(text)]
        if found:
            return found
    return []


def mentions_of(value) -> list[dict]:
    """(label, text) mentions of a span value, unique, in first-seen order: what the verifier and demos compare."""
    seen: dict[tuple[str, str], dict] = {}
    for item in value or []:
        if isinstance(item, Mapping) and item.get("label") and str(item.get("text") or "").strip():
            text = " ".join(str(item["text"]).split())
            seen.setdefault((str(item["label"]), text), {"text": text, "label": str(item["label"])})
    return list(seen.values())


def _span_id(name: str, start: int, end: int, label: str) -> str:
    return hashlib.sha1(f"{name}|{start}|{end}|{label}".encode()).hexdigest()[:10]


@dataclass(frozen=True)
class SpanControl(TagControl):
    labels: tuple[str, ...] = ()
    key: str = ""

    result_type = "labels"

    @classmethod
    def from_element(cls, element: ET.Element, objects: Mapping[str, ObjectRef]) -> SpanControl:
        (to_name,) = to_names(element, objects)
        name = element.get("name", "")
        if objects[to_name].tag != "Text":
            raise TagError(
                f'Labels "{name}" points at {objects[to_name].tag} "{to_name}": spans are supported on Text only'
            )
        labels = tuple(
            dict.fromkeys(v for label in element.iter("Label") if (v := label.get("alias") or label.get("value")))
        )
        if not labels:
            raise TagError(f'Labels "{name}" has no Label values')
        return cls(name=name, to_name=to_name, labels=labels, key=objects[to_name].key)

    def value_schema(self) -> dict:
        mention = {
            "type": "object",
            "properties": {
                # No minLength: OpenAI's strict schemas refuse string-length keywords; coerce drops empty texts.
                "text": {"type": "string"},
                "label": {"type": "string", "enum": list(self.labels)},
            },
            "required": ["text", "label"],
            "additionalProperties": False,
        }
        return {"type": "array", "items": mention, "maxItems": MAX_MENTIONS}

    def spec_line(self) -> str:
        labels = ", ".join(f'"{label}"' for label in self.labels)
        return (
            f'- "{self.name}": every entity in the text, as a list of {{"text": the entity\'s exact words copied from '
            f'the text, "label": one of {labels}}}; [] when there is none'
        )

    def example(self):
        return [{"text": "...", "label": self.labels[0]}]

    def longest(self):
        return None  # entity texts are copied from the input: as long as the text allows

    def shown(self, value):
        return [{"text": m["text"], "label": m["label"]} for m in mentions_of(value)]

    def coerce(self, raw) -> tuple[list[dict] | None, int]:
        if isinstance(raw, Mapping):
            # {"PER": ["Ada"], "LOC": [...]}: a shape models often use instead of the list we ask for.
            pairs = ((k, [v] if isinstance(v, str) else v if isinstance(v, list) else []) for k, v in raw.items())
            raw = [{"label": k, "text": t} for k, texts in pairs for t in texts]
        if not isinstance(raw, list):
            return None, 0
        folded = {label.casefold(): label for label in self.labels}
        kept, dropped = [], 0
        for item in raw:
            if not isinstance(item, Mapping):
                dropped += 1
                continue
            keys = {str(k).casefold(): v for k, v in item.items()}
            label, text = keys.get("label"), keys.get("text")
            label = label if label in self.labels else folded.get(str(label).strip().casefold())
            if label is None or not isinstance(text, str) or not text.strip():
                dropped += 1
                continue
            kept.append({"text": text.strip(), "label": label})
        return mentions_of(kept)[:MAX_MENTIONS], dropped

    def spans(self, value, text: str) -> list[tuple[int, int, str]]:
        """(start, end, label) of every mention's occurrences in ``text``, unique, in text order."""
        out: dict[tuple[int, int, str], None] = {}
        for mention in mentions_of(value):
            for start, end in locate(text, mention["text"]):
                out[(start, end, mention["label"])] = None
        return sorted(out)

    def source(self, data: Mapping | None) -> str | None:
        value = (data or {}).get(self.key)
        return value if isinstance(value, str) else None

    def results(self, value, data: Mapping, score: float) -> list[dict]:
        text = self.source(data)
        if text is None:
            return []
        items = []
        for start, end, label in self.spans(value, text):
            item = self.item({"start": start, "end": end, "text": text[start:end], "labels": [label]}, score)
            item["id"] = _span_id(self.name, start, end, label)
            items.append(item)
        return items

    def gold(self, items: list[dict], data: Mapping | None) -> list[dict] | None:
        text = self.source(data)
        out = []
        for item in items:
            value = item.get("value") or {}
            start, end = value.get("start"), value.get("end")
            labels = [label for label in value.get("labels") or [] if label in self.labels]
            if not labels:
                continue
            if text is not None and isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= len(text):
                said = text[start:end]
            else:
                said = str(value.get("text") or "")
            if said.strip():
                out += [{"text": said, "label": label, "start": start, "end": end} for label in labels]
        return out or None
