"""What a route reaches for: the process's services and its job queue, built once by the app factory."""

from __future__ import annotations

from flask import current_app, request

from optimizer.jobs.queue import JobQueue
from optimizer.runtime.services import Services

SERVICES = "services"
JOBS = "jobs"


def services() -> Services:
    return current_app.extensions[SERVICES]


def jobs() -> JobQueue:
    return current_app.extensions[JOBS]


ANONYMOUS = "anonymous"


def caller() -> str:
    """Who is asking, for the log and for records such as "who cancelled": the basic-auth user (checked before any
    route runs), or ``anonymous`` when auth is off (then a name in the header is nobody's checked name)."""
    if services().settings.basic_auth_user and request.authorization is not None:
        return request.authorization.username or ANONYMOUS
    return ANONYMOUS
