"""Build the chat messages and the JSON schema for one (policy, schema, input).

Layout:
- system: the policy's instruction, then the label sets and the answer format, generated from the label config so
  the optimiser can rewrite the instruction without ever breaking the output contract;
- few-shot demos as user/assistant turns, the assistant turn being the exact JSON the model should emit;
- user: the rendered input.

Everything is concatenation: user and policy text are never passed through ``str.format`` or a template engine.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from optimizer.labelstudio.labelconfig import ChoiceControl, Schema
from optimizer.serving.policy import Answer, Demo, Policy
from optimizer.serving.retrieval import index_for

# Demo inputs are clipped so that a long document in the pool cannot crowd the real input out of the context.
MAX_DEMO_CHARS = 1200


def _label_line(control: ChoiceControl) -> str:
    shown = []
    for label in control.labels:
        text = control.display_of(label)
        shown.append(json.dumps(label, ensure_ascii=False) + (f" ({text})" if text != label else ""))
    how = "one or more of" if control.multiple else "exactly one of"
    return f'- "{control.name}": {how} ' + ", ".join(shown)


def format_spec(schema: Schema) -> str:
    lines = ["Answer with a JSON object and nothing else."]
    lines += [_label_line(c) for c in schema.choices]
    lines += [f'- "{a.name}": your answer as free text' for a in schema.answers]
    example = {c.name: (["..."] if c.multiple else "...") for c in schema.choices}
    example.update({a.name: "..." for a in schema.answers})
    lines.append("Format: " + json.dumps(example, ensure_ascii=False))
    return "\n".join(lines)


def json_schema(schema: Schema) -> dict:
    """A JSON schema that admits only labels from each control's set (enums), for constrained decoding."""
    props: dict[str, dict] = {}
    for c in schema.choices:
        enum = {"type": "string", "enum": list(c.labels)}
        # minItems 1: constrained decoding otherwise lets small models answer [] for everything. maxItems: llama.cpp's
        # grammar ignores uniqueItems, so without a length bound a model can repeat a label until the token cap cuts
        # the JSON in half; with it the array always closes.
        array = {"type": "array", "items": enum, "uniqueItems": True, "minItems": 1, "maxItems": len(c.labels)}
        props[c.name] = array if c.multiple else enum
    for a in schema.answers:
        props[a.name] = {"type": "string"}
    return {
        "type": "object",
        "properties": props,
        "required": list(props),
        "additionalProperties": False,
    }


# Tokens allowed per separator and bracket: constrained grammars let the model put a little whitespace there.
_SLACK_PER_ITEM = 3
_SLACK = 16


def answer_token_cap(schema: Schema, free_text_tokens: int) -> int:
    """Enough tokens for the longest legal answer, so a constrained answer can never be cut off in the middle.

    The longest legal answer names every label of each multiple-choice control and the longest label of each single
    one; its UTF-8 length in bytes bounds its token count (a token is at least one byte). Whitespace the grammar
    admits between items gets a small allowance each, and every free-text area gets ``free_text_tokens``
    (``LLM_MAX_TOKENS``), the one part whose length cannot be known from the config.
    """
    longest: dict[str, list[str] | str] = {}
    items = 1
    for c in schema.choices:
        longest[c.name] = list(c.labels) if c.multiple else max(c.labels, key=lambda label: len(label.encode()))
        items += 1 + (len(c.labels) if c.multiple else 0)
    for a in schema.answers:
        longest[a.name] = ""
        items += 1
    size = len(json.dumps(longest, ensure_ascii=False).encode())
    return size + _SLACK_PER_ITEM * items + _SLACK + free_text_tokens * len(schema.answers)


def answer_json(schema: Schema, answer: Answer) -> str:
    """The assistant turn for a demo: the gold answer in exactly the shape we ask the model for."""
    out: dict[str, list[str] | str] = {}
    for c in schema.choices:
        value = answer.get(c.name, [])
        labels = [value] if isinstance(value, str) else list(value)
        labels = [label for label in labels if label in c.labels]
        out[c.name] = labels if c.multiple else (labels[0] if labels else "")
    for a in schema.answers:
        value = answer.get(a.name, "")
        out[a.name] = value if isinstance(value, str) else " ".join(value)
    return json.dumps(out, ensure_ascii=False)


def select_demos(policy: Policy, text: str) -> tuple[Demo, ...]:
    if not policy.demos or policy.demo_k <= 0:
        return policy.demos
    index = index_for(tuple(d.input for d in policy.demos))
    return tuple(policy.demos[i] for i in index.top(text, policy.demo_k))


def build_messages(policy: Policy, schema: Schema, text: str, demos: Sequence[Demo] | None = None) -> list[dict]:
    """The chat for one input. ``demos``: the ones already chosen for it (the predictor chooses once and scores
    with the same ones); omitted, they are chosen here."""
    messages = [{"role": "system", "content": policy.instruction.strip() + "\n\n" + format_spec(schema)}]
    for demo in select_demos(policy, text) if demos is None else demos:
        messages.append({"role": "user", "content": demo.input[:MAX_DEMO_CHARS]})
        messages.append({"role": "assistant", "content": answer_json(schema, demo.output)})
    messages.append({"role": "user", "content": text})
    return messages
