"""Turn a task's data into the plain text the LLM reads, one renderer per object tag.

The same function renders live tasks in ``/predict`` and gold items in the optimiser, so the loop scores exactly the
input users' tasks produce. Rendering never interprets the text (no ``str.format``): braces, quotes and markup in
task data reach the model as they are, minus HTML tags for ``HyperText``.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from html.parser import HTMLParser

from optimizer.labelstudio.labelconfig import ObjectTag, Schema


class MissingInput(ValueError):
    """The task lacks the data field a config object reads; that task cannot be predicted."""


class _TextOnly(HTMLParser):
    """Collects visible text; block tags become line breaks so paragraphs stay apart."""

    BLOCKS = frozenset({"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article"})
    HIDDEN = frozenset({"script", "style", "head", "title"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag, attrs):
        if tag in self.HIDDEN:
            self._hidden += 1
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag in self.HIDDEN and self._hidden:
            self._hidden -= 1
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data):
        if not self._hidden:
            self.parts.append(data)


def html_to_text(markup: str) -> str:
    parser = _TextOnly()
    parser.feed(markup)
    parser.close()
    text = html.unescape("".join(parser.parts))
    lines = (re.sub(r"[ \t\r\f\v]+", " ", line).strip() for line in text.split("\n"))
    return "\n".join(line for line in lines if line)


def render_paragraphs(value, name_key: str = "author", text_key: str = "text") -> str:
    """A dialogue as readable ``author: text`` turns, one per line."""
    if isinstance(value, str):
        return value.strip()
    if not isinstance(value, list):
        raise MissingInput("Paragraphs data must be a list of {author, text} objects")
    lines = []
    for turn in value:
        if isinstance(turn, Mapping):
            who = str(turn.get(name_key, "") or "").strip()
            said = str(turn.get(text_key, "") or "").strip()
            lines.append(f"{who}: {said}" if who else said)
        else:
            lines.append(str(turn).strip())
    return "\n".join(line for line in lines if line)


def render_object(obj: ObjectTag, data: Mapping) -> str:
    if obj.key not in data:
        raise MissingInput(f'task data has no "{obj.key}" field (read by {obj.tag} "{obj.name}")')
    value = data[obj.key]
    if obj.tag == "Paragraphs":
        return render_paragraphs(value, obj.name_key, obj.text_key)
    text = value if isinstance(value, str) else ("" if value is None else str(value))
    return html_to_text(text) if obj.tag == "HyperText" else text.strip()


def render_input(schema: Schema, data: Mapping) -> str:
    """The model's input for one task: the single object's text, or each object under its name."""
    if not isinstance(data, Mapping):
        raise MissingInput("task data must be an object")
    if len(schema.objects) == 1:
        return render_object(schema.objects[0], data)
    return "\n\n".join(f"[{obj.name}]\n{render_object(obj, data)}" for obj in schema.objects)
