"""A scripted answer for every tag family, read off the JSON schema the backend sends and the task text.

It lets the fake LLM answer any config deterministically, so a test knows each task's expected result in advance:
- spans (an array of ``{"text", "label"}``): every gazetteer entry that occurs in the input, with its label;
- a number: the first number in the input; a rating (integer enum): the number of ``*`` in the input;
- taxonomy paths (an array of path strings): every path whose last node is named in the input;
- pairwise (``left``/``right``): the side whose text says "better".
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

from testkit.fakellm import Reply, last_user, response_schema


def _section(text: str, name: str) -> str:
    match = re.search(r"\[" + re.escape(name) + r"\]\n(.*?)(?:\n\n\[|\Z)", text, re.S)
    return match.group(1) if match else ""


def answer_for(schema: Mapping, text: str, gazetteer: Mapping[str, str]) -> object:
    items = schema.get("items") or {}
    if schema.get("type") == "array" and items.get("type") == "object":
        labels = items["properties"]["label"]["enum"]
        return [{"text": t, "label": label} for t, label in gazetteer.items() if label in labels and t in text]
    if schema.get("type") == "array":
        return [path for path in items["enum"] if path.split(" > ")[-1].lower() in text.lower()]
    if schema.get("type") == "number":
        found = re.search(r"-?\d+(?:\.\d+)?", text)
        return float(found.group()) if found else 0
    if schema.get("type") == "integer":
        return max(1, min(text.count("*"), max(schema["enum"])))
    if schema.get("enum") == ["left", "right"]:
        names = re.findall(r"^\[([^\]]+)\]$", text, re.M)
        return "right" if len(names) == 2 and "better" in _section(text, names[1]) else "left"
    return ""


def tag_responder(gazetteer: Mapping[str, str] | None = None):
    def respond(body: dict) -> Reply:
        schema = response_schema(body) or {}
        text = last_user(body)
        answer = {name: answer_for(prop, text, gazetteer or {}) for name, prop in schema.get("properties", {}).items()}
        return Reply(json.dumps(answer, ensure_ascii=False))

    return respond
