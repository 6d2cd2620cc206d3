"""HTTP API for policy history and training jobs: a Flask blueprint the app factory registers.

It is glue like ``model.py``: the protocol layer (``ls_protocol``) stays prompt-agnostic, and the logic lives in
``optimizer.state.history`` / ``optimizer.jobs.queue``. Every route is behind the app's basic auth. Bodies are
read and errors answered by the protocol layer (``ls_protocol``), the same way as the Label Studio routes; the
history's own errors are mapped to statuses by ``DOMAIN_ERRORS`` in ``web/app.py``. ``<project>``
is the full uid Label Studio uses (``12.1700000000``) or the bare numeric id (``12``), resolved through the alias
index; every reference is parsed by ``web.refs``.

- ``GET  /projects/<p>/policies``              every version, newest first, live and pinned marked, each with the
                                               ``model_version`` strings Label Studio saw it served as; training state
- ``GET  /projects/<p>/policies/<version>``    one version (or the one a served ``model_version`` names): text,
                                               demos, scores, parent, job, promotions
- ``GET  /projects/<p>/diff?from=&to=``        unified diff of instructions + demos added/removed
- ``POST /projects/<p>/policies {"instruction", "demos"?, "live"?, "expected"?}``  publish a hand-written policy
- ``POST /projects/<p>/rollback {"version", "expected"?, "pin"?}``   compare-and-set back to a version (409 if raced)
- ``POST /projects/<p>/pin {"version"?}`` / ``POST /projects/<p>/unpin``
- ``POST /projects/<p>/train``                 queue a run (coalesced like START_TRAINING)
- ``POST /projects/<p>/predict {"tasks"?}``    bulk pre-annotation: every task lacking a current-version prediction,
                                               or the task ids given; 202 ``{"job"}``
- ``GET  /projects/<p>/events``                recent webhook events (summaries)
- ``GET  /projects/<p>/settings``              the effective LLM settings (profile, model, knobs, verifiers; no secrets)
- ``GET  /jobs/<id>``                          a job's status, progress meta, result or failure reason
"""

from __future__ import annotations

import logging
from typing import Annotated

from flask import Blueprint, request
from pydantic import Field

from ls_protocol import (
    Conflict,
    InvalidInput,
    NotFound,
    Payload,
    json_body,
    json_response,
    operation,
    path_param,
    query_param,
    read_object,
    validate,
)
from optimizer.labelstudio.labelconfig import parse_label_config
from optimizer.learning.loop_config import LoopConfig
from optimizer.learning.publishing import MAX_DEMO_CHARS, MAX_DEMOS, check_published
from optimizer.runtime.versions import policy_version
from optimizer.serving.policy import Policy
from web.context import caller, jobs, services
from web.refs import JOB_PATTERN, PROJECT_PATTERN, VERSION_PATTERN, JobRef, ProjectRef, VersionRef

bp = Blueprint("policies", __name__)
log = logging.getLogger("web.policies")

Version = Annotated[str, Field(pattern=VERSION_PATTERN)]


class DemoBody(Payload):
    input: Annotated[str, Field(min_length=1, max_length=MAX_DEMO_CHARS)]
    output: dict[str, str | list[str] | int | float | list[dict] | dict]


class PublishRequest(Payload):
    """A policy a person wrote: made a version in the history (source ``manual``), live if ``live``."""

    instruction: Annotated[str, Field(min_length=1, max_length=100_000)]
    demos: Annotated[list[DemoBody], Field(max_length=MAX_DEMOS, default_factory=list)]
    demo_k: Annotated[int, Field(ge=0, le=64)] = 0
    narrow_k: Annotated[int, Field(ge=0, le=1000)] = 0
    live: bool = False
    expected: Version | None = None


class RollbackRequest(Payload):
    version: Version
    expected: Version | None = None
    pin: bool = False


class PinRequest(Payload):
    version: Version | None = None


class BulkPredictRequest(Payload):
    """Label Studio task ids to pre-annotate; omitted: every task lacking a prediction of the live version."""

    tasks: Annotated[list[Annotated[int, Field(gt=0)]], Field(min_length=1, max_length=1_000_000)] | None = None


def project_ref(ref: str) -> str:
    """A project id or uid from a URL → the uid its policies live under (400 if malformed, 404 if unknown)."""
    text = ProjectRef.parse(ref).text
    registry = services().projects
    project = registry.resolve(text)
    if not registry.known(project):
        raise NotFound(f"unknown project {ref!r}: the backend has not seen it from Label Studio yet", "project")
    return project


def version_ref(value, name: str = "version") -> str:
    return VersionRef.parse(value, name).text


def job_ref(value: str) -> str:
    return JobRef.parse(value).text


@bp.get("/projects/<ref>/policies")
def list_policies(ref: str):
    here = services()
    project = project_ref(ref)
    entries = here.history.entries(project)
    served = here.projects.served_versions(project)
    by_policy: dict[str, list[str]] = {}
    for version, made_of in sorted(served.items(), key=lambda item: item[1].get("at", 0), reverse=True):
        by_policy.setdefault(made_of.get("policy") or policy_version(version), []).append(version)
    return json_response(
        {
            "project": project,
            "live": next((e.version for e in entries if e.live), None),
            "pinned": here.history.pinned(project),
            "training": here.coalescer.status(project),
            "policies": [{**e.to_dict(), "served_as": by_policy.get(e.version, [])} for e in entries],
            "served": served,
        }
    )


@bp.post("/projects/<ref>/policies")
def publish(ref: str):
    """Publish a policy written by hand: checked like a proposal (length cap, the label set, no secrets)."""
    project = project_ref(ref)
    data = validate(PublishRequest, read_object())
    policy = Policy.from_dict(data.model_dump(exclude={"live", "expected"}))
    return json_response(publish_policy(project, policy, live=data.live, expected=data.expected), 201)


def publish_policy(project: str, policy: Policy, *, live: bool, expected: str | None) -> dict:
    """The one path a hand-written policy takes into the history, from the API and the dashboard's form."""
    here = services()
    config = here.projects.label_config(project)
    if not config:
        raise Conflict("the backend has no label config for this project yet: connect it in Label Studio", "project")
    check_published(policy, parse_label_config(config), max_chars=LoopConfig().max_instruction_chars,
                    secrets=here.settings.secret_values())  # fmt: skip
    answer = here.history.publish(project, policy, source="manual", live=live, expected=expected)
    log.info("project %s: published %s (live: %s) by %s", project, policy.version, live, caller(),
             extra={"project": project, "version": policy.version})  # fmt: skip
    return answer


@bp.get("/projects/<ref>/settings")
def project_settings(ref: str):
    """What ``/predict`` and training use for this project: its Extra params over the server's defaults."""
    project = project_ref(ref)
    return json_response({"project": project, **services().project_settings(project).public()})


@bp.get("/projects/<ref>/policies/<version>")
def show_policy(ref: str, version: str):
    """A policy version, or the policy a served ``model_version`` (``pv-….c….m…``) was made of."""
    project, served = project_ref(ref), version_ref(version)
    shown = services().history.show(project, policy_version(served))
    if served != shown["version"]:
        shown["served"] = {"version": served, **(services().projects.served_versions(project).get(served) or {})}
    return json_response(shown)


@bp.get("/projects/<ref>/diff")
def diff(ref: str):
    project = project_ref(ref)
    new, old = request.args.get("to"), request.args.get("from")
    new = version_ref(new, "to") if new is not None else None
    old = version_ref(old, "from") if old is not None else None
    return json_response(services().history.diff(project, old, new))


@bp.post("/projects/<ref>/rollback")
def rollback(ref: str):
    project = project_ref(ref)
    data = validate(RollbackRequest, read_object())
    return json_response(services().history.rollback(project, data.version, expected=data.expected, pin=data.pin))


@bp.post("/projects/<ref>/pin")
def pin(ref: str):
    project = project_ref(ref)
    data = validate(PinRequest, read_object(required=False))
    return json_response(services().history.pin(project, data.version))


@bp.post("/projects/<ref>/unpin")
def unpin(ref: str):
    return json_response(services().history.unpin(project_ref(ref)))


@bp.post("/projects/<ref>/train")
def train(ref: str):
    return json_response(jobs().train_now(project_ref(ref), reason="api"), 202)


@bp.post("/projects/<ref>/predict")
def predict(ref: str):
    project = project_ref(ref)
    tasks = validate(BulkPredictRequest, read_object(required=False)).tasks
    version = services().store.current(project).version
    job = jobs().enqueue_bulk(project, version, tasks, reason="api")
    answer = {"project": project, "version": version, "job": job, "tasks": len(tasks) if tasks else "all"}
    return json_response(answer, 202)


@bp.get("/projects/<ref>/events")
def events(ref: str):
    project = project_ref(ref)
    limit = request.args.get("limit", "50")
    if not limit.isdigit() or not 1 <= int(limit) <= 1000:
        raise InvalidInput('"limit" must be a number from 1 to 1000', "limit")
    return json_response({"project": project, "events": services().projects.events(project, int(limit))})


@bp.get("/jobs/<job_id>")
def job(job_id: str):
    view = jobs().view(job_ref(job_id))
    if view is None:
        raise NotFound(f"no job {job_id!r} (unknown, or its result expired)", "job")
    return json_response(view.to_dict())


_P = path_param("ref", PROJECT_PATTERN)
OPENAPI_MODELS = (PublishRequest, RollbackRequest, PinRequest, BulkPredictRequest)
OPENAPI_PATHS = {
    "/projects/{ref}/policies": {
        "get": operation("every policy version, newest first", params=[_P]),
        "post": operation(
            "publish a policy written by hand (live if asked)", ok=201, params=[_P], request=json_body(PublishRequest)
        ),
    },
    "/projects/{ref}/policies/{version}": {
        "get": operation("one policy version", params=[_P, path_param("version", VERSION_PATTERN)])
    },
    "/projects/{ref}/diff": {
        "get": operation("diff of two versions", params=[_P, query_param("from"), query_param("to")])
    },
    "/projects/{ref}/rollback": {
        "post": operation("make an earlier version live", params=[_P], request=json_body(RollbackRequest))
    },
    "/projects/{ref}/pin": {
        "post": operation("stop automatic promotion", params=[_P], request=json_body(PinRequest, False))
    },
    "/projects/{ref}/predict": {
        "post": operation(
            "pre-annotate the project's tasks in the background",
            ok=202,
            params=[_P],
            request=json_body(BulkPredictRequest, False),
        )
    },
    "/projects/{ref}/settings": {"get": operation("the project's own settings and profile", params=[_P])},
    "/projects/{ref}/unpin": {"post": operation("resume automatic promotion", params=[_P])},
    "/projects/{ref}/train": {"post": operation("queue a training run", ok=202, params=[_P])},
    "/projects/{ref}/events": {
        "get": operation("recent webhook events", params=[_P, query_param("limit", {"type": "integer"})])
    },
    "/jobs/{job_id}": {"get": operation("a job's status and result", params=[path_param("job_id", JOB_PATTERN)])},
}
