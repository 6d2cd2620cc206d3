"""The references a request or a command names: a project, a policy version, a job. One parser each.

Every HTTP route, the OpenAPI description (``PATTERNS``) and the CLI parse them here, so a reference the API
documents is exactly the one it accepts. Parsing is pure: it checks the shape and says which field is wrong.
Whether the project exists is the caller's question (the web layer asks the project registry in Redis).

This module imports only :mod:`optimizer.labelstudio.ids`, so the CLI uses it without loading Flask
(``tests/test_layers.py`` places it in the bottom layer). The protocol layer keeps the same project rule for Label
Studio's own fields (``ls_protocol.requests.PROJECT_PATTERN``); a test keeps the two equal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

from optimizer.labelstudio.ids import numeric_id

# No ":" in a project: it separates the parts of Redis keys (``ns:train:<p>:lease``).
PROJECT_PATTERN = r"^[A-Za-z0-9_.-]{1,128}$"
VERSION_PATTERN = r"^[A-Za-z0-9_.:-]{1,128}$"
JOB_PATTERN = r"^[A-Za-z0-9_-]{1,128}$"
PATTERNS = {"project": PROJECT_PATTERN, "version": VERSION_PATTERN, "job": JOB_PATTERN}


class RefError(ValueError):
    """A reference of the wrong shape; ``field`` names it for the 400 answer (or the CLI's error line)."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


@dataclass(frozen=True)
class _Ref:
    """A reference of one shape: ``PATTERN`` is the rule, ``WHAT`` says it in words for the 400."""

    PATTERN: ClassVar[str]
    WHAT: ClassVar[str]
    FIELD: ClassVar[str]
    text: str

    @classmethod
    def parse(cls, value, field: str | None = None):
        field = field or cls.FIELD
        if not isinstance(value, str) or not re.fullmatch(cls.PATTERN, value):
            raise RefError(f'"{field}" must be {cls.WHAT}', field)
        return cls(value)


@dataclass(frozen=True)
class ProjectRef(_Ref):
    """A Label Studio project as a request names it: its numeric id (``12``) or its uid (``12.1700000000``)."""

    PATTERN = PROJECT_PATTERN
    WHAT = "a Label Studio project id or uid (letters, digits, '.', '-', '_')"
    FIELD = "project"

    @property
    def number(self) -> int | None:
        """The numeric id Label Studio's REST API takes, or None for a key that is not a Label Studio project."""
        return numeric_id(self.text)

    def require_number(self, field: str = "project") -> int:
        number = self.number
        if number is None:
            raise RefError(f'"{field}" must be a Label Studio project id such as 12 (or its uid 12.1700000000)', field)
        return number


@dataclass(frozen=True)
class VersionRef(_Ref):
    """A policy version (``pv-0123456789ab``)."""

    PATTERN = VERSION_PATTERN
    WHAT = 'a policy version such as "pv-0123456789ab"'
    FIELD = "version"


@dataclass(frozen=True)
class JobRef(_Ref):
    """An RQ job id: a training run, a bulk run or one of its chunks."""

    PATTERN = JOB_PATTERN
    WHAT = "a job id of letters, digits, '-' and '_'"
    FIELD = "job"
