"""What a route reaches for: the process's services and its job queue, built once by the app factory."""

from __future__ import annotations

from flask import current_app

from optimizer.jobs.queue import JobQueue
from optimizer.runtime.services import Services

SERVICES = "services"
JOBS = "jobs"


def services() -> Services:
    return current_app.extensions[SERVICES]


def jobs() -> JobQueue:
    return current_app.extensions[JOBS]
