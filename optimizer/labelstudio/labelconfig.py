"""A Label Studio label config reduced to what a prompt policy needs: what to read and what to answer.

The config is parsed with label-studio-sdk's ``LabelInterface`` (the same parser Label Studio's own tools use), then
checked for the things that would make predictions wrong rather than merely ugly: controls pointing at objects that do
not exist, a ``Choices`` with no choices, nothing to predict at all. A config that fails those checks raises
:class:`LabelConfigError`, which the web layer turns into a 400 and the CLI into a readable message.

Schemas are immutable and cached by the config text, because Label Studio sends the same config with every request.
"""

from __future__ import annotations

import hashlib
import json
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from functools import cached_property, lru_cache

from optimizer.labelstudio.tags import PARSERS, ObjectRef, TagControl, TagError, parse_tag

OBJECT_TAGS = ("Text", "HyperText", "Paragraphs")


class LabelConfigError(ValueError):
    """The label config cannot be used for prompting; the message says why in a user's words."""


@dataclass(frozen=True)
class ObjectTag:
    """An input the annotator sees: the task data under ``data[key]`` shown as ``tag``."""

    name: str
    tag: str
    key: str
    name_key: str = "author"
    text_key: str = "text"


@dataclass(frozen=True)
class ChoiceControl:
    """A ``Choices`` control: the labels the model may pick, and whether it may pick several."""

    name: str
    to_name: str
    labels: tuple[str, ...]
    multiple: bool
    # Human-readable text shown for a choice whose stored value differs (``<Choice value="1">Good</Choice>``).
    display: tuple[tuple[str, str], ...] = ()

    def display_of(self, label: str) -> str:
        return dict(self.display).get(label, label)


@dataclass(frozen=True)
class TextControl:
    """A ``TextArea`` the model fills with free text (its answer)."""

    name: str
    to_name: str


@dataclass(frozen=True)
class Schema:
    """What to read (objects), what to answer (choices, answers, tags) and where a typed prompt lives.

    ``tags`` are the controls with a module of their own in :mod:`optimizer.labelstudio.tags` (spans, numbers,
    ratings, taxonomies, pairwise), each carrying its whole contract.
    """

    objects: tuple[ObjectTag, ...]
    choices: tuple[ChoiceControl, ...]
    answers: tuple[TextControl, ...]
    prompt_area: TextControl | None
    digest: str = field(default="")
    tags: tuple[TagControl, ...] = ()

    @property
    def outputs(self) -> tuple[str, ...]:
        """Names of every control the model answers, in config order of kind (choices, texts, then tags)."""
        controls = (*self.choices, *self.answers, *self.tags)
        return tuple(c.name for c in controls)

    def contract(self) -> dict:
        """What the backend reads and answers, and nothing of the layout: every object's field, every control it
        fills with its labels, choice mode and bounds. A label added, a control switched to multiple choice or a
        field renamed changes it; a header, a style or a reordered ``View`` does not."""
        return {
            "objects": [asdict(o) for o in self.objects],
            "choices": [asdict(c) for c in self.choices],
            "answers": [c.name for c in self.answers],
            "prompt": self.prompt_area.name if self.prompt_area else None,
            "tags": [{"type": type(t).__name__, **asdict(t)} for t in self.tags],
        }

    @cached_property
    def fingerprint(self) -> str:
        """A short hash of :meth:`contract`: part of the ``model_version`` Label Studio sees."""
        canonical = json.dumps(self.contract(), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:8]

    def choice(self, name: str) -> ChoiceControl | None:
        return next((c for c in self.choices if c.name == name), None)

    def tag(self, name: str) -> TagControl | None:
        return next((t for t in self.tags if t.name == name), None)


def _tag_controls(config: str, objects: list[ObjectTag]) -> tuple[TagControl, ...]:
    """The config's tag-module controls, read from the XML (nested Choice trees and bounds live there)."""
    try:
        root = ET.fromstring(config)
    except ET.ParseError:
        return ()
    refs = {o.name: ObjectRef(o.tag, o.key) for o in objects}
    try:
        return tuple(parse_tag(element, refs) for element in root.iter() if element.tag in PARSERS)
    except TagError as exc:
        raise LabelConfigError(str(exc)) from None


def _display_texts(config: str) -> dict[str, dict[str, str]]:
    """Choice display texts by control name. LabelInterface keeps values but drops the element text."""
    out: dict[str, dict[str, str]] = {}
    try:
        root = ET.fromstring(config)
    except ET.ParseError:
        return out
    for choices in root.iter("Choices"):
        texts: dict[str, str] = {}
        for choice in choices.iter("Choice"):
            value = choice.get("alias") or choice.get("value")
            text = (choice.text or "").strip() or choice.get("hint") or ""
            if value is not None and text and text != value:
                texts[value] = text
        out[choices.get("name", "")] = texts
    return out


def warm_up() -> None:
    """Import the SDK's parser now (~0.7 s), so a worker's first ``/setup`` stays far inside Label Studio's 3 s."""
    from label_studio_sdk.label_interface import LabelInterface  # noqa: F401


@lru_cache(maxsize=256)
def parse_label_config(config: str) -> Schema:
    """Parse and check a label config. Raises :class:`LabelConfigError` with a readable reason."""
    if not isinstance(config, str) or not config.strip():
        raise LabelConfigError("label config is empty")
    # Imported here: the SDK takes ~2 s to import, and only code paths that parse configs should pay for it.
    from label_studio_sdk.label_interface import LabelInterface

    try:
        interface = LabelInterface(config)
    except Exception as exc:  # the SDK raises several unrelated types for malformed XML
        raise LabelConfigError(f"label config is not valid XML: {exc}") from None

    objects = []
    for obj in interface.objects:
        if obj.tag not in OBJECT_TAGS:
            continue
        value = obj.attr.get("value", "")
        if not value.startswith("$") or len(value) < 2:
            raise LabelConfigError(f'object tag "{obj.name}" needs value="$field", got {value!r}')
        objects.append(
            ObjectTag(
                name=obj.name,
                tag=obj.tag,
                key=value[1:],
                name_key=obj.attr.get("nameKey", "author"),
                text_key=obj.attr.get("textKey", "text"),
            )
        )
    if not objects:
        raise LabelConfigError("label config has no Text, HyperText or Paragraphs tag to read")
    object_names = {o.name for o in objects}

    displays = _display_texts(config)
    choices, answers, prompt_area = [], [], None
    for control in interface.controls:
        to_names = list(control.to_name or [])
        if control.tag not in ("Choices", "TextArea"):
            continue
        if not to_names or to_names[0] not in object_names:
            raise LabelConfigError(f'control "{control.name}" points at unknown object {to_names!r}')
        if control.tag == "Choices":
            labels = tuple(dict.fromkeys(control.labels))
            if not labels:
                raise LabelConfigError(f'Choices "{control.name}" has no Choice values')
            multiple = (control.attr.get("choice") or "single").lower() == "multiple"
            display = tuple((k, v) for k, v in displays.get(control.name, {}).items() if k in labels)
            choices.append(ChoiceControl(control.name, to_names[0], labels, multiple, display))
        elif control.name.lower().startswith("prompt") and prompt_area is None:
            prompt_area = TextControl(control.name, to_names[0])
        else:
            answers.append(TextControl(control.name, to_names[0]))
    tags = _tag_controls(config, objects)
    if not choices and not answers and not tags:
        raise LabelConfigError(
            "label config has no control for the model to fill (Choices, TextArea, Labels, Number, Rating, Taxonomy "
            "or Pairwise)"
        )
    digest = hashlib.sha256(config.encode()).hexdigest()[:16]
    return Schema(tuple(objects), tuple(choices), tuple(answers), prompt_area, digest, tags)
