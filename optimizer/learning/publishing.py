"""A policy written by a person (or by ``python -m optimizer optimize`` on a gold file) checked before it is stored.

A published policy goes where the optimiser's candidates go, so it is held to what a proposal is held to, and to
what a person can get wrong that a proposal cannot:

- **the length cap** of an instruction (``LoopConfig.max_instruction_chars``), and an instruction at all;
- **the label set**: every demo answers only controls the project's config has, with values inside each control's
  domain (a Choices label exactly as written, one for single choice; a number in range; a path of the taxonomy...);
  a demo outside it would teach the model a label Label Studio must never receive;
- **no secrets**: a value this server holds as a secret (an API key, the basic-auth password) or text shaped like
  an API key is refused, because policies are shown by the API and the dashboard and kept in history.

Each problem names the field a person should fix (``instruction``, ``demos[3].output.intent``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from optimizer.labelstudio.labelconfig import Schema
from optimizer.serving.policy import Demo, Policy

MAX_DEMOS = 1000
MAX_DEMO_CHARS = 20_000
# Shapes of common provider keys: OpenAI/Anthropic-style "sk-...", GitHub, AWS access keys, Slack, Bearer JWTs.
_KEY_SHAPES = re.compile(
    r"\b(sk-[A-Za-z0-9_-]{16,}|gh[pousr]_[A-Za-z0-9]{20,}|AKIA[0-9A-Z]{16}|xox[abpr]-[A-Za-z0-9-]{10,}"
    r"|eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,})"
)


class PublishRefused(ValueError):
    """A published policy that cannot be stored; ``field`` names what to fix (the API answers 400 with it)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def _no_secret(text: str, field: str, secrets: Sequence[str]) -> None:
    if any(secret and len(secret) >= 8 and secret in text for secret in secrets) or _KEY_SHAPES.search(text):
        raise PublishRefused(field, f'"{field}" holds what looks like a secret (an API key or password); secrets '
                                    "stay on the server and never go into a policy")  # fmt: skip


def _check_value(schema: Schema, control: str, value, field: str) -> None:
    choice = schema.choice(control)
    if choice is not None:
        labels = [value] if isinstance(value, str) else value
        if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
            raise PublishRefused(field, f'"{field}" must be a label of {control!r} or a list of them')
        unknown = [x for x in labels if x not in choice.labels]
        if unknown:
            raise PublishRefused(field, f'"{field}": {unknown[0]!r} is not a label of {control!r}; labels: '
                                        + ", ".join(choice.labels))  # fmt: skip
        if not choice.multiple and len(labels) != 1:
            raise PublishRefused(field, f'"{field}": {control!r} is single choice: give exactly one label')
        return
    tag = schema.tag(control)
    if tag is not None:
        coerced, dropped = tag.coerce(value)
        if coerced is None or dropped:
            raise PublishRefused(field, f'"{field}" is not a value {control!r} ({type(tag).__name__}) can hold')
        return
    if not isinstance(value, str):  # a free-text answer
        raise PublishRefused(field, f'"{field}" must be text')


def _check_demo(schema: Schema, demo: Demo, index: int, secrets: Sequence[str]) -> None:
    where = f"demos[{index}]"
    if not demo.input.strip() or len(demo.input) > MAX_DEMO_CHARS:
        raise PublishRefused(f"{where}.input", f'"{where}.input" must be 1 to {MAX_DEMO_CHARS} characters')
    _no_secret(demo.input, f"{where}.input", secrets)
    if not demo.output:
        raise PublishRefused(f"{where}.output", f'"{where}.output" must answer at least one control')
    for control, value in demo.output.items():
        if control not in schema.outputs:
            raise PublishRefused(f"{where}.output", f'"{where}.output": the label config has no control '
                                                    f"{control!r} the model fills; controls: "
                                                    + ", ".join(schema.outputs))  # fmt: skip
        _check_value(schema, control, value, f"{where}.output.{control}")
        if isinstance(value, str):
            _no_secret(value, f"{where}.output.{control}", secrets)


def check_published(policy: Policy, schema: Schema, *, max_chars: int, secrets: Sequence[str] = ()) -> None:
    """Raise :class:`PublishRefused` for the first problem; return None when the policy may be stored."""
    if not policy.instruction.strip():
        raise PublishRefused("instruction", '"instruction" is empty')
    if len(policy.instruction) > max_chars:
        raise PublishRefused("instruction", f'"instruction" is too long ({len(policy.instruction)} > {max_chars} '
                                            "characters, the cap every proposal is held to)")  # fmt: skip
    _no_secret(policy.instruction, "instruction", secrets)
    if len(policy.demos) > MAX_DEMOS:
        raise PublishRefused("demos", f'"demos" holds {len(policy.demos)} items; at most {MAX_DEMOS}')
    for index, demo in enumerate(policy.demos):
        _check_demo(schema, demo, index, secrets)
    if policy.demo_k > len(policy.demos):
        raise PublishRefused("demo_k", f'"demo_k" ({policy.demo_k}) retrieves more demos than the policy has')
