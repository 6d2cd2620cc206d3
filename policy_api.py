"""HTTP API for policy history and training jobs: a Flask blueprint the app factory registers.

It is glue like ``model.py``: the protocol layer (``ls_protocol``) stays prompt-agnostic, and the logic lives in
``optimizer.state.history`` / ``optimizer.state.jobqueue``. Every route is behind the app's basic auth. ``<project>``
is the full uid Label Studio uses (``12.1700000000``) or the bare numeric id (``12``), resolved through the alias index.

- ``GET  /projects/<p>/policies``              every version, newest first, live and pinned marked; training state
- ``GET  /projects/<p>/policies/<version>``    one version: text, demos, scores, parent, job, promotions
- ``GET  /projects/<p>/diff?from=&to=``        unified diff of instructions + demos added/removed
- ``POST /projects/<p>/rollback {"version", "expected"?, "pin"?}``   compare-and-set back to a version (409 if raced)
- ``POST /projects/<p>/pin {"version"?}`` / ``POST /projects/<p>/unpin``
- ``POST /projects/<p>/train``                 queue a run (coalesced like START_TRAINING)
- ``GET  /projects/<p>/events``                recent webhook events (summaries)
- ``GET  /jobs/<id>``                          a job's status, progress meta, result or failure reason
"""

from __future__ import annotations

import json
import re

import redis
from flask import Blueprint, Response, current_app, request

from ls_protocol import InvalidInput
from optimizer.runtime.services import Services
from optimizer.state.history import HistoryError

bp = Blueprint("policies", __name__)

_REF = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")


def _json(payload: dict, status: int = 200) -> Response:
    return Response(json.dumps(payload, ensure_ascii=False, default=str), status=status, mimetype="application/json")


def _services() -> Services:
    return current_app.extensions["services"]


def _project(ref: str) -> str:
    if not _REF.match(ref):
        raise InvalidInput("project must be a Label Studio project id or uid (letters, digits, '.', '-', '_')")
    services = _services()
    project = services.projects.resolve(ref)
    if not services.projects.known(project):
        raise InvalidInput(f"unknown project {ref!r}: the backend has not seen it from Label Studio yet", 404)
    return project


def _version(value, name: str = "version") -> str:
    if not isinstance(value, str) or not _REF.match(value):
        raise InvalidInput(f'"{name}" must be a policy version such as "pv-0123456789ab"')
    return value


def _body(required: bool) -> dict:
    raw = request.get_data(cache=True)
    if not raw.strip():
        if required:
            raise InvalidInput("request body is empty; expected a JSON object")
        return {}
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInput(f"request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidInput("request body must be a JSON object")
    return data


@bp.errorhandler(HistoryError)
def _history_error(exc: HistoryError):
    return _json({"error": exc.message, "status": exc.status}, exc.status)


@bp.errorhandler(redis.RedisError)
def _redis_down(exc: redis.RedisError):
    return _json({"error": "Redis is unavailable; try again later", "status": 503}, 503)


@bp.get("/projects/<ref>/policies")
def list_policies(ref: str):
    services = _services()
    project = _project(ref)
    entries = services.history.entries(project)
    return _json(
        {
            "project": project,
            "live": next((e.version for e in entries if e.live), None),
            "pinned": services.history.pinned(project),
            "training": services.coalescer.status(project),
            "policies": [e.to_dict() for e in entries],
        }
    )


@bp.get("/projects/<ref>/policies/<version>")
def show_policy(ref: str, version: str):
    return _json(_services().history.show(_project(ref), _version(version)))


@bp.get("/projects/<ref>/diff")
def diff(ref: str):
    services = _services()
    project = _project(ref)
    new = _version(request.args.get("to") or services.store.current_version(project), "to")
    old = request.args.get("from")
    if old is None:
        shown = services.history.show(project, new)
        old = shown.get("parent") or new
    return _json(services.history.diff(project, _version(old, "from"), new))


@bp.post("/projects/<ref>/rollback")
def rollback(ref: str):
    project = _project(ref)
    body = _body(required=True)
    version = _version(body.get("version"))
    expected = body.get("expected")
    if expected is not None:
        expected = _version(expected, "expected")
    pin = body.get("pin", False)
    if not isinstance(pin, bool):
        raise InvalidInput('"pin" must be true or false')
    return _json(_services().history.rollback(project, version, expected=expected, pin=pin))


@bp.post("/projects/<ref>/pin")
def pin(ref: str):
    project = _project(ref)
    version = _body(required=False).get("version")
    if version is not None:
        version = _version(version)
    return _json(_services().history.pin(project, version))


@bp.post("/projects/<ref>/unpin")
def unpin(ref: str):
    return _json(_services().history.unpin(_project(ref)))


@bp.post("/projects/<ref>/train")
def train(ref: str):
    project = _project(ref)
    decision = _services().jobs.trigger(project, reason="api")
    return _json({"project": project, "status": decision.status, "job": decision.job}, 202)


@bp.get("/projects/<ref>/events")
def events(ref: str):
    project = _project(ref)
    limit = request.args.get("limit", "50")
    if not limit.isdigit() or not 1 <= int(limit) <= 1000:
        raise InvalidInput('"limit" must be a number from 1 to 1000')
    return _json({"project": project, "events": _services().projects.events(project, int(limit))})


@bp.get("/jobs/<job_id>")
def job(job_id: str):
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,128}", job_id):
        raise InvalidInput("job id must contain only letters, digits, '-' and '_'")
    view = _services().jobs.view(job_id)
    if view is None:
        raise InvalidInput(f"no job {job_id!r} (unknown, or its result expired)", 404)
    return _json(view)
