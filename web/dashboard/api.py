"""The dashboard's JSON twins: each page's data as JSON, built by the same function the page renders.

- ``GET /projects``    every project: live version, pin, last run, live scores, predictions served and empty share
- ``GET /jobs``        jobs running, queued or waiting now, with their progress (the Live page polls it)
- ``GET /runs/<id>``   a training run: reward curve per step, initial and final scores, usage and estimated cost

A project page's twin is the policy API's ``GET /projects/<p>/policies`` (with ``/policies/<v>`` and ``/diff``).
"""

from __future__ import annotations

from flask import Blueprint, Response

from ls_protocol import NotFound, json_response
from web.context import services
from web.dashboard import overview
from web.refs import JobRef

bp = Blueprint("dashboard_api", __name__)


def run_or_404(job_id: str) -> dict:
    found = overview.run(services(), JobRef.parse(job_id).text)
    if found is None:
        raise NotFound(f"no job {job_id!r} (unknown, or its result expired)", "job")
    return found


@bp.get("/projects")
def projects() -> Response:
    return json_response(overview.projects(services()))


@bp.get("/jobs")
def jobs() -> Response:
    return json_response(overview.live(services()))


@bp.get("/runs/<job_id>")
def run(job_id: str) -> Response:
    return json_response(run_or_404(job_id))
