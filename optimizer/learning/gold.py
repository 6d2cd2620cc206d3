"""Gold items from files or Label Studio tasks, rendered exactly as ``/predict`` renders live tasks.

Formats (``load_gold`` tells them apart by content, not by file name):
- **JSON Lines** ``{"text": ..., "labels": [...]}``, one item per line (``../shared/data``);
- **JSON Lines with answers** ``{"text" | "data": ..., "answer": {control: value}}`` and ``--config``: one value per
  control of any kind, in the shape the model answers (labels, text, ``[{"text", "label"}]`` spans, a number, a
  rating, taxonomy paths, ``"left"``/``"right"``), each checked against its control like a model's answer;
- **the seed's ground truth** ``[{"dialogue": [{"author", "text"}...], "labels": [...]}]``, rendered like a
  ``Paragraphs`` tag (``author: text`` per turn);
- **a Label Studio JSON export** (a list of tasks with ``data`` and ``annotations``), mapped through the project's
  label config. :func:`items_from_tasks` does that mapping and is shared with the training job, which fetches the
  same task dicts through the SDK.

A plain file has no label config, so one is written for it: one object read from ``$text`` (or ``$dialogue``) and one
``Choices`` named ``label`` whose labels come from ``--labels`` (a JSON list) or, failing that, the sorted union of
the gold labels. The control allows several labels when any item has other than exactly one. The generated XML is
kept, so a user can paste it into Label Studio and get the same prompt.

Annotator choice, when a task has several annotations: cancelled ones are skipped, then the one marked
``ground_truth`` wins, then the most recently updated (``updated_at``, else ``created_at``), then the highest id.
The latest correction is the best statement of what the team wants, and the rule is deterministic.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import quoteattr

from optimizer.labelstudio.labelconfig import LabelConfigError, Schema, parse_label_config
from optimizer.labelstudio.render import MissingInput, render_input
from optimizer.labelstudio.results import answer_from_result, prompt_from_result

CONTROL = "label"


class GoldError(ValueError):
    """The gold file cannot be used; the message says why in a user's words."""


@dataclass(frozen=True)
class GoldItem:
    id: str
    input: str
    answer: dict[str, list[str] | str]
    prompt: str | None = None


@dataclass
class GoldSet:
    schema: Schema
    items: list[GoldItem]
    label_config: str
    format: str
    skipped: Counter = field(default_factory=Counter)


def synth_config(labels: Sequence[str], multiple: bool, tag: str = "Text", key: str = "text") -> str:
    """A minimal Label Studio config for a plain gold file: one object, one ``Choices`` named ``label``."""
    object_line = f"  <{tag} name={quoteattr(key)} value={quoteattr('$' + key)}/>"
    choices = "\n".join(f"    <Choice value={quoteattr(label)}/>" for label in labels)
    kind = "multiple" if multiple else "single"
    return (
        "<View>\n"
        + object_line
        + f'\n  <Choices name="{CONTROL}" toName={quoteattr(key)} choice="{kind}">\n'
        + choices
        + "\n  </Choices>\n</View>"
    )


def _read_labels(path: str | Path) -> list[str]:
    try:
        labels = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise GoldError(f"cannot read labels from {path}: {exc}") from None
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) and x.strip() for x in labels):
        raise GoldError(f"{path} must hold a non-empty JSON list of label names")
    return list(dict.fromkeys(labels))


def _canonical(labels: Iterable, allowed: Sequence[str], where: str) -> list[str]:
    """Gold labels mapped onto the config's spelling: exactly, or ignoring case. Anything else is an error."""
    by_fold = {label.casefold(): label for label in allowed}
    out, unknown = [], []
    for label in labels:
        text = str(label).strip()
        hit = text if text in allowed else by_fold.get(text.casefold())
        if hit is None:
            unknown.append(text)
        elif hit not in out:
            out.append(hit)
    if unknown:
        raise GoldError(f"{where}: labels not in the label set: {', '.join(sorted(set(unknown))[:5])}")
    return out


def _records_to_items(
    records: list[tuple[str, Mapping, list]], config: str | None, labels: list[str] | None, tag: str, key: str
) -> GoldSet:
    """(id, task data, gold labels) → items, through ``config`` or a config written for the labels."""
    if config is None:
        names = labels or sorted({str(x).strip() for _, _, got in records for x in got if str(x).strip()})
        if not names:
            raise GoldError("gold has no labels and no --labels file was given")
        multiple = any(len(got) != 1 for _, _, got in records)
        config = synth_config(names, multiple, tag, key)
    schema = _parse(config)
    if len(schema.choices) != 1:
        raise GoldError("a label config for a plain gold file needs exactly one Choices control")
    control = schema.choices[0]
    skipped: Counter = Counter()
    items = []
    for item_id, data, got in records:
        chosen = _canonical(got, control.labels, f"item {item_id}")
        if not control.multiple and len(chosen) != 1:
            skipped["not exactly one label for a single choice"] += 1
            continue
        text = _render(schema, data, skipped)
        if text is not None:
            items.append(GoldItem(item_id, text, {control.name: chosen}))
    return GoldSet(schema, items, config, "", skipped)


def _render(schema: Schema, data: Mapping, skipped: Counter) -> str | None:
    """The item's model input, or None (counted in ``skipped``) when it has none to show."""
    try:
        text = render_input(schema, data)
    except MissingInput:
        skipped["input missing"] += 1
        return None
    if not text.strip():
        skipped["input empty"] += 1
        return None
    return text


def _parse(config: str) -> Schema:
    try:
        return parse_label_config(config)
    except LabelConfigError as exc:
        raise GoldError(f"label config: {exc}") from None


def _file_answer(schema: Schema, answer: Mapping, where: str) -> dict:
    """A gold file's ``answer`` object checked against the config: a bad value is an error, never silently dropped."""
    out: dict = {}
    for name, value in answer.items():
        choice, tag = schema.choice(name), schema.tag(name)
        if choice is not None:
            out[name] = _canonical(value if isinstance(value, list) else [value], choice.labels, where)
        elif tag is not None:
            kept, dropped = tag.coerce(value)
            if kept is None or dropped:
                raise GoldError(f"{where}: {name}: {json.dumps(value, ensure_ascii=False)[:80]} is outside the control")
            out[name] = kept
        elif any(a.name == name for a in schema.answers) and isinstance(value, str):
            out[name] = value
        else:
            raise GoldError(f"{where}: {name!r} is not a control of the label config (or its value is not text)")
    return out


def _load_answers(path: Path, rows: list[tuple[int, dict]], config: str | None) -> GoldSet:
    if config is None:
        raise GoldError(f'{path}: rows with "answer" need the label config that names their controls (--config PATH)')
    schema = _parse(config)
    skipped: Counter = Counter()
    items = []
    for lineno, row in rows:
        where = f"{path}:{lineno}"
        data = row.get("data")
        if not isinstance(data, Mapping):
            data = {_object_key(config, "text"): row.get("text")}
        answer = _file_answer(schema, row["answer"], where)
        text = _render(schema, data, skipped)
        if text is not None and answer:
            items.append(GoldItem(f"L{lineno}", text, answer))
    return GoldSet(schema, items, config, "jsonl", skipped)


def load_jsonl(path: Path, text: str, config: str | None = None, labels: list[str] | None = None) -> GoldSet:
    """``text`` is the file's content (already read by :func:`load_gold`); ``path`` names it in errors."""
    records, answered = [], []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise GoldError(f"{path}:{lineno}: not JSON ({exc.msg})") from None
        if isinstance(row, dict) and isinstance(row.get("answer"), dict):
            answered.append((lineno, row))
            continue
        if not isinstance(row, dict) or not isinstance(row.get("text"), str) or not isinstance(row.get("labels"), list):
            raise GoldError(f'{path}:{lineno}: expected {{"text": "...", "labels": [...]}}')
        records.append((f"L{lineno}", row, row["labels"]))
    if answered:
        if records:
            raise GoldError(f'{path}: mixes rows with "labels" and rows with "answer"; use one form')
        return _load_answers(path, answered, config)
    key = _object_key(config, "text")
    gold = _records_to_items([(i, {key: r["text"]}, got) for i, r, got in records], config, labels, "Text", "text")
    gold.format = "jsonl"
    return gold


def load_seed(rows: list, config: str | None = None, labels: list[str] | None = None) -> GoldSet:
    key = _object_key(config, "dialogue")
    records = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or not isinstance(row.get("dialogue"), list | str):
            raise GoldError(f'item {i}: expected {{"dialogue": [{{"author", "text"}}...], "labels": [...]}}')
        got = row.get("labels") or []
        records.append((f"#{i}", {key: row["dialogue"]}, got if isinstance(got, list) else [got]))
    gold = _records_to_items(records, config, labels, "Paragraphs", "dialogue")
    gold.format = "seed"
    return gold


def _object_key(config: str | None, default: str) -> str:
    """The data key a given config reads, so a plain file's text lands where the config expects it."""
    if config is None:
        return default
    schema = _parse(config)
    if len(schema.objects) != 1:
        raise GoldError("a label config for a plain gold file needs exactly one Text/HyperText/Paragraphs object")
    return schema.objects[0].key


def _annotation_order(annotation: Mapping) -> tuple:
    stamp = str(annotation.get("updated_at") or annotation.get("created_at") or "")
    ident = annotation.get("id")
    return (bool(annotation.get("ground_truth")), stamp, ident if isinstance(ident, int) else -1)


def choose_annotation(schema: Schema, annotations: Iterable, data: Mapping | None = None) -> Mapping | None:
    """The annotation a task's gold comes from (see the module docstring), or None when none is usable."""
    usable = [
        a
        for a in annotations or ()
        if isinstance(a, Mapping)
        and not a.get("was_cancelled")
        and answer_from_result(schema, a.get("result") or [], data)
    ]
    return max(usable, key=_annotation_order) if usable else None


def items_from_tasks(schema: Schema, tasks: Iterable) -> tuple[list[GoldItem], Counter]:
    """Label Studio tasks (export or SDK, each with ``data`` and ``annotations``) → gold items, and what was skipped."""
    items: list[GoldItem] = []
    skipped: Counter = Counter()
    for task in tasks:
        if not isinstance(task, Mapping) or not isinstance(task.get("data"), Mapping):
            skipped["not a task"] += 1
            continue
        annotation = choose_annotation(schema, task.get("annotations") or (), task["data"])
        if annotation is None:
            skipped["no usable annotation"] += 1
            continue
        text = _render(schema, task["data"], skipped)
        if text is None:
            continue
        result = annotation.get("result") or []
        items.append(
            GoldItem(
                id=f"task-{task.get('id')}",
                input=text,
                answer=answer_from_result(schema, result, task["data"]),
                prompt=prompt_from_result(schema, result),
            )
        )
    return items, skipped


def load_gold(path: str | Path, *, config: str | None = None, labels_path: str | Path | None = None) -> GoldSet:
    """Read any supported gold file. ``config`` is label config XML; a Label Studio export requires it."""
    path = Path(path)
    labels = _read_labels(labels_path) if labels_path else None
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise GoldError(f"cannot read {path}: {exc.strerror or exc}") from None
    stripped = text.lstrip()
    if not stripped.startswith("["):
        return load_jsonl(path, text, config, labels)
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as exc:
        raise GoldError(f"{path}: not JSON ({exc.msg} at line {exc.lineno})") from None
    first = rows[0] if rows else None
    if isinstance(first, dict) and "dialogue" in first:
        return load_seed(rows, config, labels)
    if isinstance(first, dict) and "data" in first:
        if config is None:
            raise GoldError("a Label Studio export needs the project's label config (--config PATH)")
        schema = _parse(config)
        items, skipped = items_from_tasks(schema, rows)
        return GoldSet(schema, items, config, "labelstudio", skipped)
    raise GoldError(f"{path}: not JSON Lines, the seed's ground truth, or a Label Studio export")
