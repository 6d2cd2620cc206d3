"""The dashboard's JSON twins: each page's data as JSON, built by the same function the page renders.

- ``GET /projects``    every project: live version, pin, last run, live scores, predictions served and empty share
- ``GET /jobs``        jobs running, queued or waiting now, with their progress (the Live page polls it)
- ``GET /runs/<id>``   a training run: reward curve per step, initial and final scores, usage and estimated cost

A project page's twin is the policy API's ``GET /projects/<p>/policies`` (with ``/policies/<v>`` and ``/diff``).
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app

from ls_protocol import NotFound, json_response
from optimizer.runtime import overview
from policy_api import job_ref

bp = Blueprint("dashboard_api", __name__)


def _services():
    return current_app.extensions["services"]


def run_or_404(job_id: str) -> dict:
    found = overview.run(_services(), job_ref(job_id))
    if found is None:
        raise NotFound(f"no job {job_id!r} (unknown, or its result expired)", "job")
    return found


@bp.get("/projects")
def projects() -> Response:
    return json_response(overview.projects(_services()))


@bp.get("/jobs")
def jobs() -> Response:
    return json_response(overview.live(_services()))


@bp.get("/runs/<job_id>")
def run(job_id: str) -> Response:
    return json_response(run_or_404(job_id))
