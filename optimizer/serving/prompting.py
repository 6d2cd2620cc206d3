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
    lines += [t.spec_line() for t in schema.tags]
    example = {c.name: (["..."] if c.multiple else "...") for c in schema.choices}
    example.update({a.name: "..." for a in schema.answers})
    example.update({t.name: t.example() for t in schema.tags})
    lines.append("Format: " + json.dumps(example, ensure_ascii=False))
    return "\n".join(lines)


def json_schema(schema: Schema) -> dict:
    """A JSON schema that admits only labels from each control's set (enums), for constrained decoding."""
    props: dict[str, dict] = {}
    for c in schema.choices:
        enum = {"type": "string", "enum": list(c.labels)}
        # minItems 1: constrained decoding otherwise lets small models answer [] for everything.
        props[c.name] = {"type": "array", "items": enum, "uniqueItems": True, "minItems": 1} if c.multiple else enum
    for a in schema.answers:
        props[a.name] = {"type": "string"}
    for t in schema.tags:
        props[t.name] = t.value_schema()
    return {
        "type": "object",
        "properties": props,
        "required": list(props),
        "additionalProperties": False,
    }


def answer_json(schema: Schema, answer: Answer) -> str:
    """The assistant turn for a demo: the gold answer in exactly the shape we ask the model for."""
    out: dict[str, object] = {}
    for c in schema.choices:
        value = answer.get(c.name, [])
        labels = [value] if isinstance(value, str) else list(value)
        labels = [label for label in labels if label in c.labels]
        out[c.name] = labels if c.multiple else (labels[0] if labels else "")
    for a in schema.answers:
        value = answer.get(a.name, "")
        out[a.name] = value if isinstance(value, str) else " ".join(value)
    for t in schema.tags:
        out[t.name] = t.shown(answer.get(t.name))
    return json.dumps(out, ensure_ascii=False)


def select_demos(policy: Policy, text: str) -> tuple[Demo, ...]:
    if not policy.demos or policy.demo_k <= 0:
        return policy.demos
    index = index_for(tuple(d.input for d in policy.demos))
    return tuple(policy.demos[i] for i in index.top(text, policy.demo_k))


def build_messages(policy: Policy, schema: Schema, text: str) -> list[dict]:
    messages = [{"role": "system", "content": policy.instruction.strip() + "\n\n" + format_spec(schema)}]
    for demo in select_demos(policy, text):
        messages.append({"role": "user", "content": demo.input[:MAX_DEMO_CHARS]})
        messages.append({"role": "assistant", "content": answer_json(schema, demo.output)})
    messages.append({"role": "user", "content": text})
    return messages
