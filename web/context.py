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


def caller() -> str:
    """Who is asking, for the log and for records such as "who cancelled": the basic-auth user, or ``anonymous``
    (the app's auth check already ran, so a name here is a checked one)."""
    auth = request.authorization
    return auth.username if auth is not None and auth.username else "anonymous"
