"""Build the chat messages and the JSON schema for one (policy, schema, input).

Layout, unchanging part first so a server's prefix cache (llama.cpp reuses the longest common prefix of the
previous prompt) computes it once per policy, not once per item:
- system: the policy's instruction (with its label definitions, when it has a guide), then the label sets and the
  answer format, generated from the label config so the optimiser can rewrite the instruction without ever
  breaking the output contract. It is identical for every item of a policy;
- few-shot demos as user/assistant turns, the assistant turn being the exact JSON the model should emit;
- user: the rendered input, then, when the policy narrows the label set (``narrowing``), that input's candidate
  labels. The candidates differ per item, so they come last and never break the shared prefix.

Everything is concatenation: user and policy text are never passed through ``str.format`` or a template engine.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from optimizer.labelstudio.labelconfig import ChoiceControl, Schema
from optimizer.serving.narrowing import Narrowed
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


def json_schema(schema: Schema, narrowed: Narrowed | None = None) -> dict:
    """A JSON schema that admits only labels from each control's set (enums), for constrained decoding.

    ``narrowed`` (from ``narrowing.narrow``) replaces a control's enum by that input's candidates.
    """
    narrowed = narrowed or {}
    props: dict[str, dict] = {}
    for c in schema.choices:
        labels = list(narrowed.get(c.name, c.labels))
        enum = {"type": "string", "enum": labels}
        # minItems 1: constrained decoding otherwise lets small models answer [] for everything. maxItems: llama.cpp's
        # grammar ignores uniqueItems, so without a length bound a model can repeat a label until the token cap cuts
        # the JSON in half; with it the array always closes.
        array = {"type": "array", "items": enum, "uniqueItems": True, "minItems": 1, "maxItems": len(labels)}
        props[c.name] = array if c.multiple else enum
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


# Tokens allowed per separator and bracket: constrained grammars let the model put a little whitespace there.
_SLACK_PER_ITEM = 3
_SLACK = 16


def answer_token_cap(schema: Schema, free_text_tokens: int) -> int:
    """Enough tokens for the longest legal answer, so a constrained answer can never be cut off in the middle.

    The longest legal answer names every label of each multiple-choice control and the longest label of each single
    one; its UTF-8 length in bytes bounds its token count (a token is at least one byte). Whitespace the grammar
    admits between items gets a small allowance each, and every free-text area gets ``free_text_tokens``
    (``LLM_MAX_TOKENS``), the one part whose length cannot be known from the config; so does a tag control whose
    longest answer is unbounded (named-entity spans).
    """
    longest: dict[str, list[str] | str] = {}
    items = 1
    for c in schema.choices:
        longest[c.name] = list(c.labels) if c.multiple else max(c.labels, key=lambda label: len(label.encode()))
        items += 1 + (len(c.labels) if c.multiple else 0)
    for a in schema.answers:
        longest[a.name] = ""
        items += 1
    unbounded = len(schema.answers)
    for t in schema.tags:
        value = t.longest()
        # A tag whose answer has no length bound (spans copy entity text from the input) is budgeted like free text.
        longest[t.name] = [] if value is None else value
        unbounded += value is None
        items += 1 + (len(value) if isinstance(value, list) else 0)
    size = len(json.dumps(longest, ensure_ascii=False).encode())
    return size + _SLACK_PER_ITEM * items + _SLACK + free_text_tokens * unbounded


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
    if not policy.shown_demos:
        return ()
    if policy.demo_k <= 0:
        return policy.demos
    index = index_for(tuple(d.input for d in policy.demos))
    return tuple(policy.demos[i] for i in index.top(text, policy.demo_k))


def candidates_note(narrowed: Narrowed) -> str:
    lines = [f'Candidate labels for "{name}": ' + ", ".join(labels) for name, labels in narrowed.items()]
    return "\n\n" + "\n".join(lines) if lines else ""


def build_messages(
    policy: Policy,
    schema: Schema,
    text: str,
    demos: Sequence[Demo] | None = None,
    narrowed: Narrowed | None = None,
) -> list[dict]:
    """The chat for one input. ``demos``: the ones already chosen for it (the predictor chooses once and scores
    with the same ones); omitted, they are chosen here. ``narrowed``: this input's candidate labels, if any."""
    messages = [{"role": "system", "content": policy.instruction.strip() + "\n\n" + format_spec(schema)}]
    for demo in select_demos(policy, text) if demos is None else demos:
        messages.append({"role": "user", "content": demo.input[:MAX_DEMO_CHARS]})
        messages.append({"role": "assistant", "content": answer_json(schema, demo.output)})
    messages.append({"role": "user", "content": text + candidates_note(narrowed or {})})
    return messages
