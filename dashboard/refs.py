"""Checking the references a dashboard URL or form carries: a project, a policy version, a job id.

The same rules as the JSON API's: a bad reference is a 4xx naming the field, never a 500, and never a Redis key
built from arbitrary text.
"""

from __future__ import annotations

import re

from ls_protocol import InvalidInput
from optimizer.runtime.services import Services

_REF = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
_JOB = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


def project_ref(services: Services, ref: str) -> str:
    """A Label Studio project id or uid the backend knows → its uid (404 if unknown)."""
    if not _REF.match(ref):
        raise InvalidInput("project must be a Label Studio project id or uid (letters, digits, '.', '-', '_')")
    project = services.projects.resolve(ref)
    if not services.projects.known(project):
        raise InvalidInput(f"unknown project {ref!r}: the backend has not seen it from Label Studio yet", 404)
    return project


def version_ref(value, name: str = "version") -> str:
    if not isinstance(value, str) or not _REF.match(value):
        raise InvalidInput(f'"{name}" must be a policy version such as "pv-0123456789ab"')
    return value


def job_ref(value: str) -> str:
    if not _JOB.match(value):
        raise InvalidInput("job id must contain only letters, digits, '-' and '_'")
    return value
