"""The app gunicorn runs: ``gunicorn '_wsgi:app'`` (or ``'_wsgi:create_app()'``).

Importing this module does nothing; ``app`` is built on first access (PEP 562), so tests and tools can import it and
build apps with their own settings.
"""

from __future__ import annotations

import redis
from flask import Flask

import dashboard
from export_api import bp as export_api
from ls_protocol import BasicAuth, describe, form_body, operation, path_param, query_param
from ls_protocol import create_app as create_protocol_app
from model import PromptPolicyModel
from observability import instrument
from optimizer.labelstudio.client import LabelStudioError, LabelStudioNotConfigured, LabelStudioNotFound
from optimizer.labelstudio.labelconfig import warm_up
from optimizer.project_settings import ProfileGone
from optimizer.runtime.services import Services
from optimizer.runtime.startup import prepare, start
from optimizer.settings import Settings
from optimizer.state.history import HistoryError, StaleLive, UnknownPolicy
from optimizer.training.webhooks import WebhookError, WebhookUnavailable
from policy_api import OPENAPI_MODELS, OPENAPI_PATHS
from policy_api import bp as policy_api

# The domain's typed errors → HTTP statuses, in one place (the layers below know nothing of HTTP).
DOMAIN_ERRORS = {
    HistoryError: 400,
    UnknownPolicy: 404,
    StaleLive: 409,
    WebhookError: 400,
    WebhookUnavailable: 503,
    redis.RedisError: (503, "Redis is unavailable; try again later"),
    LabelStudioError: 502,
    LabelStudioNotFound: 404,
    LabelStudioNotConfigured: 503,
    ProfileGone: 409,
}


_P, _JOB = path_param("ref"), path_param("job_id", r"^[A-Za-z0-9_-]{1,128}$")
# The routes outside the protocol layer and the policy API, for /openapi.json (the fuzz suite checks none is missing).
OTHER_PATHS = {
    "/metrics": {"get": operation("Prometheus metrics (text format)")},
    "/projects/{ref}/export": {
        "get": operation(
            "a reward-scoring project as JSON Lines",
            params=[_P, query_param("format"), query_param("include_judged")],
        )
    },
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
                request=form_body(["csrf_token", "version", "expected"]),
            )
        }
        for action in ("rollback", "pin", "unpin", "train")
    },
}


def create_app(settings: Settings | None = None, services: Services | None = None) -> Flask:
    # A bad setting stops the worker here with one line; gunicorn.conf.py already checked it in the master.
    settings = prepare(settings, "web") if settings is not None else start("web")
    services = services or Services(settings)
    warm_up()
    auth = None
    if settings.basic_auth_user:
        auth = BasicAuth(settings.basic_auth_user, settings.basic_auth_pass.get_secret_value())

    def model_factory(**kwargs) -> PromptPolicyModel:
        return PromptPolicyModel(services, **kwargs)

    app = create_protocol_app(
        model_factory,
        auth=auth,
        webhook_secret=settings.webhook_secret.get_secret_value(),
        max_body_bytes=settings.max_body_bytes,
        name="prompt-policy-backend",
        domain_errors=DOMAIN_ERRORS,
        allow_anonymous_writes=settings.allow_anonymous_writes,
    )
    app.extensions["services"] = services
    app.register_blueprint(policy_api)
    describe(app, OPENAPI_PATHS, OPENAPI_MODELS)
    app.register_blueprint(export_api)
    dashboard.register(app, DOMAIN_ERRORS)
    instrument(app, services)
    describe(app, OTHER_PATHS)
    return app


def __getattr__(name: str):
    if name == "app":
        value = create_app()
        globals()["app"] = value
        return value
    raise AttributeError(name)
