"""Label Studio's result format ⇄ per-control answers, for predictions going out and annotations coming in.

Outgoing, each filled control becomes result items (one per control; one per span for ``Labels``) with ``from_name``,
``to_name``, ``type`` and ``value`` as Label Studio stores them, and the prompt that produced the answer is echoed into
the prompt ``TextArea``. Label Studio validates nothing inside ``result``, so every label is re-checked against its
control here, last.

Incoming, an annotation's result items become a gold answer; items for unknown controls, unknown labels and the prompt
area are ignored. Tag controls (spans, numbers, ratings, taxonomies, pairwise) map both ways through their own modules
in :mod:`optimizer.labelstudio.tags`; spans need the task's data, for offsets out and the span text in.
"""

from __future__ import annotations

from collections.abc import Mapping

from optimizer.labelstudio.labelconfig import Schema

# One control's answer: its labels (Choices), its text (TextArea), or a tag control's value (see tags.base).
Answer = dict[str, object]


def to_results(
    schema: Schema,
    choices: dict,
    texts: dict,
    scores: dict,
    prompt: str | None = None,
    values: Mapping | None = None,
    data: Mapping | None = None,
) -> list[dict]:
    items: list[dict] = []
    for control in schema.choices:
        allowed = set(control.labels)
        labels = [label for label in choices.get(control.name, []) if label in allowed]
        labels = labels if control.multiple else labels[:1]
        if not labels:
            continue
        items.append(
            {
                "from_name": control.name,
                "to_name": control.to_name,
                "type": "choices",
                "value": {"choices": labels},
                "score": float(scores.get(control.name, 0.0)),
            }
        )
    for area in schema.answers:
        text = texts.get(area.name)
        if text:
            items.append(
                {
                    "from_name": area.name,
                    "to_name": area.to_name,
                    "type": "textarea",
                    "value": {"text": [text]},
                    "score": float(scores.get(area.name, 0.0)),
                }
            )
    for tag in schema.tags:
        value = (values or {}).get(tag.name)
        if value is not None:
            items += tag.results(value, data or {}, float(scores.get(tag.name, 0.0)))
    if prompt and schema.prompt_area is not None and items:
        items.append(
            {
                "from_name": schema.prompt_area.name,
                "to_name": schema.prompt_area.to_name,
                "type": "textarea",
                "value": {"text": [prompt]},
            }
        )
    return items


def _text_of(item: dict) -> str:
    text = (item.get("value") or {}).get("text")
    if isinstance(text, list):
        return "\n".join(str(t) for t in text if t is not None).strip()
    return str(text).strip() if text is not None else ""


def prompt_in_context(schema: Schema, context: dict | None) -> str | None:
    """The prompt an annotator typed in the prompt ``TextArea`` (interactive mode), if any."""
    if not context or schema.prompt_area is None:
        return None
    for item in context.get("result") or []:
        if isinstance(item, dict) and item.get("from_name") == schema.prompt_area.name:
            text = _text_of(item)
            if text:
                return text
    return None


def answer_from_result(schema: Schema, result: list, data: Mapping | None = None) -> Answer:
    """Gold answer from one annotation's ``result``: labels per Choices, text per answer TextArea, a value per tag.

    ``data`` is the task's data: a span's gold text is read from it at the span's offsets when they fit.
    """
    answer: Answer = {}
    for tag in schema.tags:
        mine = [i for i in result or [] if isinstance(i, dict) and i.get("from_name") == tag.name]
        value = tag.gold(mine, data) if mine else None
        if value is not None:
            answer[tag.name] = value
    for item in result or []:
        if not isinstance(item, dict):
            continue
        name = item.get("from_name")
        control = schema.choice(name)
        if control is not None:
            chosen = (item.get("value") or {}).get("choices") or []
            labels = [c for c in chosen if c in control.labels]
            answer[name] = list(dict.fromkeys([*answer.get(name, []), *labels]))
        elif any(a.name == name for a in schema.answers):
            text = _text_of(item)
            if text:
                answer[name] = text
    return answer


def prompt_from_result(schema: Schema, result: list) -> str | None:
    """The prompt typed into the prompt ``TextArea`` of an annotation, as seed 001 used it."""
    return prompt_in_context(schema, {"result": result})
