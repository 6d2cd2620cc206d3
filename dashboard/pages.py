"""The dashboard's HTML pages and buttons, server-rendered with Flask's Jinja2 (autoescaped: prompts are data).

Pages (all behind the app's basic auth, like every route but ``/health``):

- ``/dashboard``                     projects: live version, pin, last run, scores, predictions and empty share
- ``/dashboard/projects/<p>``        a project: version timeline, each version's instruction, demos and diff,
                                     and the rollback, pin, unpin and train buttons
- ``/dashboard/runs/<job>``          a training run: reward curve per step, candidates, test scores, calls, cost
- ``/dashboard/live``                jobs running and queued, refreshed in place from ``GET /jobs``

Every page renders what ``optimizer.runtime.overview`` returns, the same dict its JSON twin serves, and links to
that twin. Buttons are plain HTML forms that POST to ``/dashboard/...``; each carries a CSRF token and is checked
for its origin (``csrf.py``), then calls the same history and job-queue methods as the JSON API and redirects back
(post/redirect/get), so reloading a page never repeats an action.
"""

from __future__ import annotations

from enum import Enum

import redis
from flask import Blueprint, Response, current_app, redirect, render_template, request, url_for

from dashboard import charts
from dashboard.api import run_or_404
from dashboard.csrf import FIELD, CsrfError, CsrfGuard
from dashboard.refs import project_ref, version_ref
from ls_protocol import InvalidInput
from optimizer.runtime import overview
from optimizer.runtime.services import Services
from optimizer.state.history import HistoryError

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

    @property
    def text(self) -> str:
        return {
            Notice.ROLLED_BACK: "Rolled back: the chosen version is live.",
            Notice.PINNED: "Pinned: training runs no longer promote automatically.",
            Notice.UNPINNED: "Unpinned: training runs may promote again.",
            Notice.TRAIN_QUEUED: "A training run is queued (or folded into the one already queued).",
        }[self]


def _services() -> Services:
    return current_app.extensions["services"]


def _guard() -> CsrfGuard:
    guard = current_app.extensions.get("dashboard_csrf")
    if guard is None:
        services = _services()
        guard = CsrfGuard(services.redis, services.store.key("dashboard", "csrf-key"))
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


@bp.errorhandler(InvalidInput)
def _invalid(exc: InvalidInput):
    return render_template("error.html", status=exc.status, message=exc.message), exc.status


@bp.errorhandler(HistoryError)
def _history(exc: HistoryError):
    return render_template("error.html", status=exc.status, message=exc.message), exc.status


@bp.errorhandler(CsrfError)
def _forged(exc: CsrfError):
    return render_template("error.html", status=403, message=f"Refused: {exc}"), 403


@bp.errorhandler(redis.RedisError)
def _redis_down(exc: redis.RedisError):
    message = "Redis is unavailable, so the dashboard cannot read the state; check REDIS_URL and try again."
    return render_template("error.html", status=503, message=message), 503


# --- pages -----------------------------------------------------------------------------------------------------
@bp.get("")
@bp.get("/")
def projects_page():
    return _page("projects.html", data=overview.projects(_services()), twin=url_for("dashboard_api.projects"))


@bp.get("/projects/<ref>")
def project_page(ref: str):
    services = _services()
    data = overview.project(services, project_ref(services, ref))
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
    return _page("live.html", data=overview.live(_services()), twin=url_for("dashboard_api.jobs"))


# --- buttons ---------------------------------------------------------------------------------------------------
def _action(ref: str) -> tuple[Services, str]:
    _guard().check(request)
    services = _services()
    return services, project_ref(services, ref)


def _back(project: str, notice: Notice):
    return redirect(url_for("dashboard.project_page", ref=project, notice=notice.value), 303)


@bp.post("/projects/<ref>/rollback")
def rollback(ref: str):
    services, project = _action(ref)
    version = version_ref(request.form.get("version"))
    expected = request.form.get("expected") or None
    services.history.rollback(project, version, expected=version_ref(expected, "expected") if expected else None)
    return _back(project, Notice.ROLLED_BACK)


@bp.post("/projects/<ref>/pin")
def pin(ref: str):
    services, project = _action(ref)
    services.history.pin(project)
    return _back(project, Notice.PINNED)


@bp.post("/projects/<ref>/unpin")
def unpin(ref: str):
    services, project = _action(ref)
    services.history.unpin(project)
    return _back(project, Notice.UNPINNED)


@bp.post("/projects/<ref>/train")
def train(ref: str):
    services, project = _action(ref)
    services.jobs.trigger(project, reason="dashboard")
    return _back(project, Notice.TRAIN_QUEUED)
