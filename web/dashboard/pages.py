"""The dashboard's HTML pages and buttons, server-rendered with Flask's Jinja2 (autoescaped: prompts are data).

Pages (all behind the app's basic auth, like every route but ``/health``):

- ``/dashboard``                     projects: live version, pin, last run, scores, predictions and empty share
- ``/dashboard/projects/<p>``        a project: version timeline, each version's instruction, demos and diff,
                                     and the rollback, pin, unpin and train buttons
- ``/dashboard/runs/<job>``          a training run: reward curve per step, candidates, test scores, calls, cost
- ``/dashboard/live``                jobs running and queued, refreshed in place from ``GET /jobs``, each with a
                                     Cancel button

Every page renders what ``overview.py`` returns, the same dict its JSON twin serves, and links to
that twin. Buttons are plain HTML forms that POST to ``/dashboard/...``; each carries a CSRF token and is checked
for its origin (``csrf.py``), then calls the same history and job-queue methods as the JSON API and redirects back
(post/redirect/get), so reloading a page never repeats an action.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from enum import Enum

from flask import Blueprint, Response, current_app, g, redirect, render_template, request, url_for
from werkzeug.exceptions import HTTPException

from ls_protocol import ProtocolError
from optimizer.runtime.services import Services
from web.context import caller, jobs, services
from web.dashboard import charts, overview
from web.dashboard.api import run_or_404
from web.dashboard.csrf import FIELD, CsrfError, CsrfGuard
from web.policies import project_ref, publish_policy, version_ref
from web.refs import JobRef

log = logging.getLogger("dashboard")
ERRORS = "dashboard_domain_errors"  # app.extensions key: domain error type → status, as the JSON API maps them

bp = Blueprint(
    "dashboard",
    __name__,
    url_prefix="/dashboard",
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)

# Everything the pages need comes from this origin; nothing inline may run, so an injected tag is inert twice over.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",  # a rollback button must not be clickable inside someone else's frame
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class Notice(Enum):
    """What a redirect after a button says happened; a fixed set, so no text from the URL reaches the page."""

    ROLLED_BACK = "rolled-back"
    PINNED = "pinned"
    UNPINNED = "unpinned"
    TRAIN_QUEUED = "train-queued"
    PUBLISHED = "published"
    PUBLISHED_LIVE = "published-live"
    CANCEL_REQUESTED = "cancel-requested"

    @property
    def text(self) -> str:
        return {
            Notice.ROLLED_BACK: "Rolled back: the chosen version is live.",
            Notice.PINNED: "Pinned: training runs no longer promote automatically.",
            Notice.UNPINNED: "Unpinned: training runs may promote again.",
            Notice.TRAIN_QUEUED: "A training run is queued (or folded into the one already queued).",
            Notice.PUBLISHED: "Published: the new version is in the history; roll back to it to serve it.",
            Notice.PUBLISHED_LIVE: "Published and live: Label Studio gets the new version on its next request.",
            Notice.CANCEL_REQUESTED: "Cancel requested: the job stops at its next safe point and promotes nothing.",
        }[self]


# The buttons a project page has: each is a form POSTing to /dashboard/projects/<p>/<button>, with these fields.
BUTTONS = {
    "rollback": ("csrf_token", "version", "expected"),
    "pin": ("csrf_token",),
    "unpin": ("csrf_token",),
    "train": ("csrf_token",),
    "publish": ("csrf_token", "instruction", "live", "expected"),
}


def _guard() -> CsrfGuard:
    guard = current_app.extensions.get("dashboard_csrf")
    if guard is None:
        here = services()
        guard = CsrfGuard(here.redis, here.store.keys.dashboard_csrf_key())
        current_app.extensions["dashboard_csrf"] = guard
    return guard


def _notice() -> str | None:
    try:
        return Notice(request.args.get("notice", "")).text
    except ValueError:
        return None


def _page(template: str, **context) -> str:
    return render_template(template, csrf_field=FIELD, csrf_token=_guard().token(request), notice=_notice(), **context)


@bp.after_request
def _secure(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def _error_page(status: int, message: str):
    return render_template("error.html", status=status, message=message), status


@bp.errorhandler(ProtocolError)
def _bad_request(exc: ProtocolError):
    return _error_page(exc.status, exc.message)


@bp.errorhandler(CsrfError)
def _forged(exc: CsrfError):
    return _error_page(403, f"Refused: {exc}")


@bp.errorhandler(Exception)
def _domain_or_bug(exc: Exception):
    """The app's typed domain errors (``web.app.DOMAIN_ERRORS``, kept in ``app.extensions``) as pages with the same
    statuses as the JSON API; anything else is a bug: logged, and a 500 page without internals."""
    if isinstance(exc, HTTPException):
        return exc
    statuses: Mapping = current_app.extensions.get(ERRORS, {})
    for kind in type(exc).__mro__:
        if kind in statuses:
            answer = statuses[kind]
            status, fixed = answer if isinstance(answer, tuple) else (answer, None)
            return _error_page(status, fixed or getattr(exc, "message", None) or str(exc))
    log.exception("unhandled error in %s %s", request.method, request.path)
    return _error_page(500, f"Internal error; see the server log for request {g.get('request_id')}.")


# --- pages -----------------------------------------------------------------------------------------------------
@bp.get("")
@bp.get("/")
def projects_page():
    return _page("projects.html", data=overview.projects(services()), twin=url_for("dashboard_api.projects"))


@bp.get("/projects/<ref>")
def project_page(ref: str):
    data = overview.project(services(), project_ref(ref))
    return _page(
        "project.html",
        data=data,
        timeline=charts.version_timeline(data["versions"]),
        twin=f"/projects/{data['project']}/policies",
    )


@bp.get("/runs/<job_id>")
def run_page(job_id: str):
    data = run_or_404(job_id)
    return _page(
        "run.html",
        data=data,
        curve=charts.reward_curve(data["curve"]),
        twin=url_for("dashboard_api.run", job_id=data["job"]["id"]),
    )


@bp.get("/live")
def live_page():
    return _page("live.html", data=overview.live(services()), twin=url_for("dashboard_api.jobs"))


# --- buttons ---------------------------------------------------------------------------------------------------
def _action(ref: str) -> tuple[Services, str]:
    _guard().check(request)
    return services(), project_ref(ref)


def _back(project: str, notice: Notice):
    return redirect(url_for("dashboard.project_page", ref=project, notice=notice.value), 303)


@bp.post("/projects/<ref>/rollback")
def rollback(ref: str):
    here, project = _action(ref)
    version = version_ref(request.form.get("version"))
    expected = request.form.get("expected") or None
    here.history.rollback(project, version, expected=version_ref(expected, "expected") if expected else None)
    return _back(project, Notice.ROLLED_BACK)


@bp.post("/projects/<ref>/pin")
def pin(ref: str):
    here, project = _action(ref)
    here.history.pin(project)
    return _back(project, Notice.PINNED)


@bp.post("/projects/<ref>/unpin")
def unpin(ref: str):
    here, project = _action(ref)
    here.history.unpin(project)
    return _back(project, Notice.UNPINNED)


@bp.post("/projects/<ref>/train")
def train(ref: str):
    _, project = _action(ref)
    jobs().train_now(project, reason="dashboard")
    return _back(project, Notice.TRAIN_QUEUED)


@bp.post("/projects/<ref>/publish")
def publish(ref: str):
    """A new instruction typed on the project page, with the live version's demos, retrieval and narrowing kept."""
    here, project = _action(ref)
    instruction = (request.form.get("instruction") or "").strip()
    live = request.form.get("live") == "1"
    expected = request.form.get("expected") or None
    policy = here.store.current(project).with_instruction(instruction)
    publish_policy(project, policy, live=live, expected=version_ref(expected, "expected") if expected else None)
    return _back(project, Notice.PUBLISHED_LIVE if live else Notice.PUBLISHED)


@bp.post("/jobs/<job_id>/cancel")
def cancel(job_id: str):
    """The Live page's Cancel button: the same cancel as ``POST /jobs/<id>/cancel``, behind the CSRF checks."""
    _guard().check(request)
    jobs().cancel(JobRef.parse(job_id).text, caller())
    return redirect(url_for("dashboard.live_page", notice=Notice.CANCEL_REQUESTED.value), 303)
