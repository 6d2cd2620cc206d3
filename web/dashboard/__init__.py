"""The dashboard: what the optimiser did, as pages people can look at, over the same data as the JSON API.

``register(app)`` adds the HTML pages (``pages.py``, under ``/dashboard``) and their JSON twins (``api.py``). It is
web glue like ``web.policies``: the numbers come from ``overview.py``, charts are SVG drawn on the server
(``charts.py``), and the buttons are guarded against cross-site requests (``csrf.py``).
"""

from __future__ import annotations

from collections.abc import Mapping

from flask import Flask, request

from ls_protocol import error_response, form_body, operation, path_param
from web.dashboard.api import bp as api
from web.dashboard.csrf import CsrfError, check_origin
from web.dashboard.pages import BUTTONS, ERRORS
from web.dashboard.pages import bp as pages
from web.refs import JOB_PATTERN, PROJECT_PATTERN


def register(app: Flask, domain_errors: Mapping[type[Exception], int | tuple[int, str]]) -> None:
    """Add the pages and their JSON twins; ``domain_errors`` (type → status) become error pages with those statuses."""
    app.extensions[ERRORS] = domain_errors
    app.before_request(_refuse_cross_site_writes)
    app.register_blueprint(api)
    app.register_blueprint(pages)


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _refuse_cross_site_writes():
    """Any write a browser sent from another site is refused (see ``csrf.py``); the dashboard's own forms also need
    their token, which ``pages.py`` checks."""
    if request.method in SAFE_METHODS:
        return None
    try:
        check_origin(request)
    except CsrfError as exc:
        return error_response(403, f"refused: {exc}", exc.field)
    return None


_P, _JOB = path_param("ref", PROJECT_PATTERN), path_param("job_id", JOB_PATTERN)
OPENAPI_PATHS = {
    "/projects": {"get": operation("every project with its live version and scores (dashboard data)")},
    "/jobs": {"get": operation("jobs running and queued (dashboard data)")},
    "/runs/{job_id}": {"get": operation("one training run's report (dashboard data)", params=[_JOB])},
    "/dashboard": {"get": operation("dashboard: projects", html=True)},
    "/dashboard/": {"get": operation("dashboard: projects", html=True)},
    "/dashboard/live": {"get": operation("dashboard: live jobs", html=True)},
    "/dashboard/projects/{ref}": {"get": operation("dashboard: one project", html=True, params=[_P])},
    "/dashboard/runs/{job_id}": {"get": operation("dashboard: one run", html=True, params=[_JOB])},
    "/dashboard/static/{filename}": {
        "get": operation("dashboard assets", html=True, params=[path_param("filename", r"^[A-Za-z0-9_.-]{1,64}$")])
    },
    **{
        f"/dashboard/projects/{{ref}}/{action}": {
            "post": operation(
                f"dashboard button: {action}",
                ok=303,
                html=True,
                params=[_P],
                request=form_body(list(fields)),
            )
        }
        for action, fields in BUTTONS.items()
    },
    "/dashboard/jobs/{job_id}/cancel": {
        "post": operation(
            "dashboard button: cancel a job", ok=303, html=True, params=[_JOB], request=form_body(["csrf_token"])
        )
    },
}
