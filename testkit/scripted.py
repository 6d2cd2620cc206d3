"""Scripted labeller and proposer behaviours for the optimiser tests, served by ``testkit.fakellm.FakeLLM``.

The labeller knows the gold answers and is right on a share of items that depends on the instruction it is given:
each marker phrase in the system prompt sets the share, and which items it gets right is a hash of (instruction,
input), so every prompt has its own pattern of lucky and unlucky items, like a real model. Everything is a pure
function of the request, so runs are deterministic.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

from optimizer.learning.gold import GoldItem
from testkit.fakellm import Reply, labels_from_system, last_user, system_text

LABELS = ("alpha", "bravo", "charlie", "delta", "echo")
WORDS = {label: [f"{label}word{i}" for i in range(6)] for label in LABELS}


def make_gold(n: int, labels: Sequence[str] = LABELS) -> list[GoldItem]:
    """``n`` single-label items; each text carries words typical of its label, so BM25 neighbours share labels."""
    items = []
    for i in range(n):
        label = labels[i % len(labels)]
        words = WORDS.get(label) or [label]
        text = f"request {i}: {words[i % len(words)]} {words[(i + 1) % len(words)]} please"
        items.append(GoldItem(f"g{i}", text, {"label": [label]}))
    return items


def gold_jsonl(items: Sequence[GoldItem]) -> str:
    return "\n".join(json.dumps({"text": it.input, "labels": it.answer["label"]}) for it in items) + "\n"


def share(*parts: str) -> float:
    digest = hashlib.sha256("\x00".join(parts).encode()).hexdigest()
    return int(digest[:8], 16) / 0x100000000


def instruction_of(body: dict) -> str:
    """The policy's instruction: the system prompt before the generated format spec."""
    return system_text(body).split("\n\nAnswer with a JSON object")[0]


class Labeller:
    def __init__(self, items: Sequence[GoldItem], base: float = 0.5, markers: dict[str, float] | None = None):
        self.answers = {item.input: item.answer for item in items}
        self.base = base
        self.markers = markers or {}

    def rate(self, instruction: str) -> float:
        for marker, rate in self.markers.items():
            if marker in instruction:
                return rate
        return self.base

    def __call__(self, body: dict) -> Reply:
        text, instruction = last_user(body), instruction_of(body)
        controls = labels_from_system(body)
        gold = self.answers.get(text, {})
        correct = share(instruction, text) < self.rate(instruction)
        answer = {}
        for name, (labels, multiple) in controls.items():
            want = gold.get(name) or [labels[0]]
            got = want if correct else [next(x for x in labels if x not in want)]
            answer[name] = got if multiple else got[0]
        return Reply(json.dumps(answer))


class DemoCopier(Labeller):
    """Answers with the label of the first (nearest) demo when demos are present; otherwise like ``Labeller``."""

    def __call__(self, body: dict) -> Reply:
        demos = [m["content"] for m in body.get("messages", []) if m.get("role") == "assistant"]
        if demos:
            return Reply(demos[0])
        return super().__call__(body)


def fixed_proposer(text: str):
    def respond(body: dict) -> Reply:
        return Reply(text)

    return respond


def varied_proposer(prefix: str):
    """A new instruction per request (the request's hash is in it), all carrying ``prefix``."""

    def respond(body: dict) -> Reply:
        user = body["messages"][-1]["content"]
        return Reply(prefix + " Variant " + hashlib.sha256(user.encode()).hexdigest()[:8] + ".")

    return respond
