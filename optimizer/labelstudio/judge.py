"""Reward-scoring configs: a prompt, a response and one grade, the shape that turns the backend into an LLM judge.

Label Studio users grade a model's response to a prompt like this::

    <Text name="input" value="$prompt"/>  <Text name="output" value="$response"/>
    <Choices name="reward" toName="output"><Choice value="1">Good</Choice><Choice value="0">Bad</Choice></Choices>

A config qualifies when it reads exactly two text objects and has exactly one single-choice ``Choices`` whose
stored values are all numbers, or Good/Bad, and no other answer (no free-text ``TextArea``, no rating, number or
span tag). The ``Choices`` points at the response; the other object is the prompt. Recognising the shape here, from
the config alone, lets serving pick the judge's instruction, training pick the verifier for imbalanced grades, and
the export read ``prompt``/``response`` by the config's own ``$field`` names, all without a setting a user could
forget.

Grades are the stored values (``"1"``/``"0"``), never the captions: that is what Label Studio exports.
"""

from __future__ import annotations

from dataclasses import dataclass

from optimizer.labelstudio.labelconfig import ChoiceControl, ObjectTag, Schema

TEXT_TAGS = ("Text", "HyperText")
WORDS = {"good": 1.0, "bad": 0.0}


@dataclass(frozen=True)
class JudgeShape:
    prompt: ObjectTag
    response: ObjectTag
    control: ChoiceControl
    # Each grade's stored value and its numeric reward, in config order.
    grades: tuple[tuple[str, float], ...]

    def reward(self, grade: str) -> float | None:
        return dict(self.grades).get(grade)

    @property
    def best(self) -> str:
        """The highest grade ("Good", "1"): the one the soft ``judge_reward`` is the probability of."""
        return max(self.grades, key=lambda g: g[1])[0]

    @property
    def binary(self) -> bool:
        return len(self.grades) == 2


def grade_value(value: str) -> float | None:
    """A grade's numeric reward: the number it spells, or 1/0 for Good/Bad; None for anything else."""
    text = value.strip()
    if text.casefold() in WORDS:
        return WORDS[text.casefold()]
    try:
        number = float(text)
    except ValueError:
        return None
    return number if number == number and abs(number) != float("inf") else None


def judge_shape(schema: Schema) -> JudgeShape | None:
    """The config's judge shape, or None when it is not a reward-scoring config."""
    objects = [o for o in schema.objects if o.tag in TEXT_TAGS]
    if len(objects) != 2 or len(schema.objects) != 2 or len(schema.choices) != 1 or schema.answers or schema.tags:
        return None
    control = schema.choices[0]
    if control.multiple or len(control.labels) < 2:
        return None
    grades = [(label, grade_value(label)) for label in control.labels]
    if any(value is None for _, value in grades):
        return None
    response = next((o for o in objects if o.name == control.to_name), None)
    if response is None:
        return None
    prompt = next(o for o in objects if o is not response)
    return JudgeShape(prompt, response, control, tuple((label, float(value)) for label, value in grades))


def pair_parts(schema: Schema, shape: JudgeShape, text: str) -> tuple[str, str] | None:
    """``(prompt, response)`` of a judge input as ``render.render_input`` renders it (``[name]`` then the text, per
    object, in config order); None for a text not in that layout."""
    first, second = schema.objects
    head, separator = f"[{first.name}]\n", f"\n\n[{second.name}]\n"
    if not text.startswith(head) or separator not in text:
        return None
    a, b = text[len(head) :].split(separator, 1)
    return (a, b) if first is shape.prompt else (b, a)
