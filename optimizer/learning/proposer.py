"""Ask the optimiser LLM for better instructions, and refuse proposals that would break the contract.

One request per candidate, each with its own angle (fix confusions, recall missed labels, tighten), so candidates
differ even at temperature 0 and a weak model only has to write one instruction at a time. Messages are built by
concatenation: gold text and feedback never pass through ``str.format``.

Validation (:func:`check`) drops, and the loop counts, a proposal that is:
- empty, or unchanged from its parent;
- longer than the cap;
- trying to define the answer format (JSON/XML/YAML/CSV, braces, code fences): the format spec is generated from
  the label config and appended by ``prompting``; a conflicting one in the instruction confuses the labeller;
- pasting gold text: it shares a run of :data:`NGRAM` words with a gold input (or a whole gold input of 4-5
  words) that its parent does not already contain.

Label definitions grounded in gold (:func:`label_guide`) are written once per run from a few training examples per
label, for every ``Choices`` control of the config, and go through the same check.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from optimizer.labelstudio.labelconfig import ChoiceControl, Schema
from optimizer.learning.gold import GoldItem
from optimizer.learning.verifiers import label_set
from optimizer.serving.llm import LLMClient
from optimizer.serving.llm_errors import LLMError
from optimizer.serving.retrieval import tokenize

NGRAM = 6
MIN_WORDS = 4
MAX_EXAMPLE_CHARS = 160

ANGLES = (
    (
        "fix",
        "Rewrite the instruction so the labeller avoids the mistakes above. Add short, general decision rules "
        "that separate the labels it confuses.",
    ),
    (
        "recall",
        "Rewrite the instruction so the labeller picks the labels it missed whenever they apply and stops "
        "giving the labels it added wrongly. Describe when each of those labels applies, in general terms.",
    ),
    (
        "tighten",
        "Rewrite the instruction to be shorter and clearer, keeping every rule that helps with the mistakes above.",
    ),
)

SYSTEM = (
    "You improve the instruction given to a text-labelling model. Reply with the new instruction only: no "
    "preamble, no explanation, no answer format (the required format is added separately), no JSON, and never copy "
    "example texts into it."
)

_FORMAT = re.compile(r"[{}]|```|\b(?:json|yaml|xml|csv|markdown)\b", re.IGNORECASE)
_PREAMBLE = re.compile(r"^(?:new |improved |revised |updated )?instruction\s*:\s*", re.IGNORECASE)


@dataclass(frozen=True)
class Proposal:
    kind: str
    instruction: str
    note: str = ""


class GoldText:
    """Word n-grams of every gold input, to catch a proposal that pastes them.

    A gold text shorter than ``n`` words (but at least :data:`MIN_WORDS`) counts as one whole gram, so pasting a
    short item entirely is caught too.
    """

    def __init__(self, items: Iterable[GoldItem], n: int = NGRAM) -> None:
        self.n = n
        self.grams: dict[int, set[tuple[str, ...]]] = {}
        for item in items:
            words = tokenize(item.input)
            size = min(n, len(words))
            if size >= MIN_WORDS:
                self.grams.setdefault(size, set()).update(_grams(words, size))

    def pasted(self, text: str, allowed: str = "") -> bool:
        words, known = tokenize(text), tokenize(allowed)
        return any((_grams(words, size) - _grams(known, size)) & grams for size, grams in self.grams.items())


def _grams(words: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def clean(text: str) -> str:
    """Strip what chat models wrap around an answer: code fences, surrounding quotes, an "Instruction:" label."""
    text = (text or "").strip()
    if text.startswith("```") and text.endswith("```") and len(text) > 6:
        text = re.sub(r"^```[a-zA-Z]*\s*|\s*```$", "", text).strip()
    if len(text) > 1 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1].strip()
    return _PREAMBLE.sub("", text, count=1).strip()


def check(instruction: str, parent: str, gold: GoldText, max_chars: int) -> str | None:
    """Why a proposed instruction is unusable, or None when it may be tried."""
    if not instruction.strip():
        return "empty"
    if " ".join(instruction.split()) == " ".join(parent.split()):
        return "unchanged"
    if len(instruction) > max_chars:
        return f"too long ({len(instruction)} > {max_chars} characters)"
    if _FORMAT.search(instruction) and not _FORMAT.search(parent):
        return "defines an output format (the format spec is appended automatically)"
    if gold.pasted(instruction, allowed=parent):
        return "pastes gold text verbatim"
    return None


def _labels_line(schema: Schema) -> str:
    parts = []
    for control in schema.choices:
        how = "several" if control.multiple else "one"
        parts.append(control.name + " (" + how + "): " + ", ".join(control.labels))
    parts += [a.name + ": free text" for a in schema.answers]
    parts += [t.spec_line().removeprefix("- ") for t in schema.tags]
    return "Labels per control:\n" + "\n".join(parts)


def rewrite_messages(parent: str, schema: Schema, feedback: str, angle: str) -> list[dict]:
    user = (
        "Current instruction:\n<<<\n"
        + parent.strip()
        + "\n>>>\n\n"
        + _labels_line(schema)
        + "\n\nHow the labeller did with the current instruction:\n"
        + feedback
        + "\n\n"
        + angle
    )
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def propose(
    llm: LLMClient, parent: str, schema: Schema, feedback: str, count: int, max_tokens: int = 600
) -> tuple[list[Proposal], list[str]]:
    """Up to ``count`` rewrites (one request each), and the errors of requests that failed."""
    out, errors = [], []
    for kind, angle in ANGLES[: max(0, count)]:
        try:
            completion = llm.complete(rewrite_messages(parent, schema, feedback, angle), None, max_tokens)
        except LLMError as exc:
            errors.append(f"{kind}: {exc}")
            continue
        out.append(Proposal("rewrite:" + kind, clean(completion.text)))
    return out, errors


def guide_messages(control: ChoiceControl, examples: dict[str, list[str]]) -> list[dict]:
    blocks = []
    for label, texts in examples.items():
        blocks.append(label + ":\n" + "\n".join("  - " + t[:MAX_EXAMPLE_CHARS].replace("\n", " ") for t in texts))
    user = (
        'Here are examples of texts carrying each label of the field "'
        + control.name
        + '".\n\n'
        + "\n".join(blocks)
        + "\n\nFor each label, write one line of the form 'label: definition' that says in general terms when the "
        "label applies. Do not quote the examples."
    )
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def guide_examples(
    control: ChoiceControl, train: Sequence[GoldItem], labels: Sequence[str], per_label: int = 3
) -> dict[str, list[str]]:
    """A few training inputs per label of ``control``, in training order (deterministic)."""
    out: dict[str, list[str]] = {label: [] for label in labels}
    for item in train:
        for label in label_set(item.answer.get(control.name)):
            if label in out and len(out[label]) < per_label:
                out[label].append(item.input)
    return {label: texts for label, texts in out.items() if texts}


def parse_guide(text: str, labels: Sequence[str]) -> list[str]:
    """Keep only ``label: definition`` lines for known labels (exact or case-insensitive label), first one wins."""
    by_fold = {label.casefold(): label for label in labels}
    seen: dict[str, str] = {}
    for line in (text or "").splitlines():
        line = re.sub(r"^\s*(?:[-*•]|\d+[.)])\s*", "", line).strip()
        name, sep, definition = line.partition(":")
        label = by_fold.get(name.strip().strip("*`'\"").casefold())
        if sep and label and definition.strip() and label not in seen:
            seen[label] = definition.strip()
    return [label + ": " + definition for label, definition in seen.items()]


def label_guide(
    llm: LLMClient,
    schema: Schema,
    train: Sequence[GoldItem],
    labels: Mapping[str, Sequence[str]],
    max_tokens: int = 800,
) -> tuple[str | None, str | None]:
    """Definitions grounded in training examples, one request per control in ``labels`` (control name → labels).

    Returns (guide, error): the guide covers every control that got usable lines; the error says why the others
    did not. A config with several ``Choices`` controls gets one section per control.
    """
    sections, errors = [], []
    for control in schema.choices:
        wanted = labels.get(control.name)
        if not wanted:
            continue
        examples = guide_examples(control, train, wanted)
        if not examples:
            errors.append(f"{control.name}: no training examples for the labels")
            continue
        try:
            completion = llm.complete(guide_messages(control, examples), None, max_tokens)
        except LLMError as exc:
            errors.append(f"{control.name}: {exc}")
            continue
        lines = parse_guide(completion.text, list(examples))
        if not lines:
            errors.append(f"{control.name}: no usable 'label: definition' lines")
            continue
        title = "Label guide:" if len(labels) == 1 else f'Label guide for "{control.name}":'
        sections.append(title + "\n" + "\n".join("- " + line for line in lines))
    if not sections:
        return None, "; ".join(errors) or "no labels to define"
    return "\n\n".join(sections), ("; ".join(errors) or None)
