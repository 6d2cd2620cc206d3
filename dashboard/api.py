"""The dashboard's JSON twins: each page's data as JSON, built by the same function the page renders.

- ``GET /projects``    every project: live version, pin, last run, live scores, predictions served and empty share
- ``GET /jobs``        jobs running, queued or waiting now, with their progress (the Live page polls it)
- ``GET /runs/<id>``   a training run: reward curve per step, initial and final scores, usage and estimated cost

A project page's twin is the policy API's ``GET /projects/<p>/policies`` (with ``/policies/<v>`` and ``/diff``).
"""

from __future__ import annotations

import json

from flask import Blueprint, Response, current_app

from dashboard.refs import job_ref
from ls_protocol import InvalidInput
from optimizer.runtime import overview

bp = Blueprint("dashboard_api", __name__)


def as_json(payload: dict) -> Response:
    return Response(json.dumps(payload, ensure_ascii=False, default=str), mimetype="application/json")


def _services():
    return current_app.extensions["services"]


def run_or_404(job_id: str) -> dict:
    found = overview.run(_services(), job_ref(job_id))
    if found is None:
        raise InvalidInput(f"no job {job_id!r} (unknown, or its result expired)", 404)
    return found


@bp.get("/projects")
def projects() -> Response:
    return as_json(overview.projects(_services()))


@bp.get("/jobs")
def jobs() -> Response:
    return as_json(overview.live(_services()))


@bp.get("/runs/<job_id>")
def run(job_id: str) -> Response:
    return as_json(run_or_404(job_id))
