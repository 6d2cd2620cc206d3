"""Typed requests: every Label Studio payload is validated here once, into pydantic models, before any model code.

The models follow what Label Studio 1.23.2 sends (recorded in ``shared/ls-protocol``) and let unknown keys through
(``extra="allow"``: Label Studio adds fields between releases), but every field the backend reads has one type, no
coercion (``strict``): ``"5"`` is not a number and ``5`` is not a list. A payload that does not fit is an
:class:`InvalidInput` naming the first wrong field as a path (``params.context.result[0].value``), so the code
below never meets a value of the wrong shape and never turns one into a 500.

Task ``data`` stays a free-form object: it is the user's own data, and rendering reads only the keys the label
config names.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from .errors import InvalidInput

# How a project may be named anywhere in the protocol (``/setup``, ``/predict``, ``/versions``, webhooks). No ":":
# it separates the parts of a backend's storage keys. ``web.refs`` holds the same rule for the product's own routes
# (the protocol layer imports nothing of the product); a test keeps the two equal.
PROJECT_PATTERN = r"^[A-Za-z0-9_.-]{1,128}$"
_REF = re.compile(PROJECT_PATTERN)


def is_project_ref(text: str) -> bool:
    return bool(_REF.match(text))


def _project_ref(value: Any) -> Any:
    """A project is named by a string or a number; both become the same string (``15`` and ``"15"``)."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError("must be a Label Studio project id or uid, as a string or a number")
    text = str(value)
    if not _REF.match(text):
        raise ValueError("must be a Label Studio project id or uid (letters, digits, '.', '-', '_')")
    return text


def _text_value(value: Any) -> Any:
    """A TextArea's ``value.text``: Label Studio sends a list of lines; a single string is accepted too."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(line, str) or line is None for line in value):
        return value
    raise ValueError("must be a string or a list of strings")


ProjectRef = Annotated[str | None, BeforeValidator(_project_ref)]
LabelConfig = Annotated[str | None, Field(max_length=1_000_000)]


class Payload(BaseModel):
    """Base of every request model: strict types for the fields read, unknown keys let through."""

    model_config = ConfigDict(strict=True, extra="allow", frozen=True)


class ResultValue(Payload):
    text: Annotated[str | list[str | None] | None, BeforeValidator(_text_value)] = None
    choices: list[str] | None = None


class ResultItem(Payload):
    """One region of an annotation or of the interactive context (``from_name`` names its control)."""

    from_name: str
    to_name: str | None = None
    type: str | None = None
    value: ResultValue


class Context(Payload):
    """What an annotator has entered so far (interactive pre-annotation)."""

    result: list[ResultItem] | None = None


class PredictParams(Payload):
    context: Context | None = None


class Task(Payload):
    data: dict[str, Any]


class SetupRequest(Payload):
    project: ProjectRef = None
    schema_: str = Field(alias="schema", min_length=1, max_length=1_000_000)
    extra_params: dict[str, Any] | None = None


class PredictRequest(Payload):
    tasks: list[Task]
    label_config: LabelConfig = None
    project: ProjectRef = None
    params: PredictParams | None = None
    extra_params: dict[str, Any] | None = None

    @property
    def context(self) -> dict | None:
        """The interactive context as a plain object of the validated shape, for the model contract."""
        context = self.params.context if self.params else None
        return context.model_dump(exclude_none=True) if context is not None else None


class WebhookProject(Payload):
    """The project object webhook payloads carry (its ``id`` and ``created_at`` make the project uid)."""

    id: ProjectRef = None
    created_at: str | None = None
    label_config: LabelConfig = None


class WebhookRequest(Payload):
    action: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
    project: WebhookProject | None = None
    annotation: dict[str, Any] | None = None
    annotations: list[dict[str, Any]] | None = None
    task: dict[str, Any] | None = None


class TrainRequest(Payload):
    """The legacy ``/train`` call (Label Studio < 1.4 style): treated as ``START_TRAINING``."""

    project: ProjectRef = None
    label_config: LabelConfig = None
    annotations: list[dict[str, Any]] | None = None
    params: dict[str, Any] | None = None


Model = TypeVar("Model", bound=BaseModel)


def field_path(loc: tuple) -> str:
    """Pydantic's error location as a path a person reads: ``("tasks", 0, "data")`` → ``tasks[0].data``."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "body"


def validate(model: type[Model], data: dict) -> Model:
    """``data`` as ``model``, or an :class:`InvalidInput` naming the first field that does not fit."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        field = field_path(tuple(first["loc"]))
        message = re.sub(r" or instance of \w+", "", first["msg"].removeprefix("Value error, "))
        if first["type"] == "missing":
            message = "is required"
        raise InvalidInput(f'"{field}" {message[:1].lower()}{message[1:]}', field) from None
