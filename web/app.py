"""The app factory: the protocol app serving :class:`model.PromptPolicyModel`, plus the product's own routes.

``create_app(settings)`` builds everything; nothing happens at import time, so tests build as many apps as they
like. Each route module describes its own routes for ``/openapi.json`` (``OPENAPI_PATHS``), and the domain's typed
errors are mapped to HTTP statuses here, once (the layers below know nothing of HTTP).
"""

from __future__ import annotations

import redis
from flask import Flask

from ls_protocol import BasicAuth, ProtectedRead, describe
from ls_protocol import create_app as create_protocol_app
from model import PromptPolicyModel
from optimizer.jobs.errors import CancelError, JobEnded, UnknownJob
from optimizer.jobs.queue import JobQueue
from optimizer.jobs.webhooks import WebhookError, WebhookHandler, WebhookUnavailable
from optimizer.labelstudio.client import LabelStudioError, LabelStudioNotConfigured, LabelStudioNotFound
from optimizer.labelstudio.labelconfig import warm_up
from optimizer.learning.publishing import PublishRefused
from optimizer.project_settings import ProfileGone, ProjectSettingsError
from optimizer.runtime.annotator import Annotator
from optimizer.runtime.services import Services
from optimizer.runtime.startup import prepare, start
from optimizer.settings import Settings
from optimizer.state.history import HistoryError, StaleLive, UnknownPolicy
from web import dashboard, export, jobs, observability, policies, quality, spend
from web.context import JOBS, SERVICES
from web.refs import RefError

DOMAIN_ERRORS = {
    RefError: 400,
    PublishRefused: 400,
    ProjectSettingsError: 400,
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
    CancelError: 400,
    UnknownJob: 404,
    JobEnded: 409,
}


def create_app(settings: Settings | None = None, services: Services | None = None) -> Flask:
    # A bad setting stops the worker here with one line; gunicorn.conf.py already checked it in the master.
    settings = prepare(settings, "web") if settings is not None else start("web")
    services = services or Services(settings)
    warm_up()
    auth = None
    if settings.basic_auth_user:
        auth = BasicAuth(settings.basic_auth_user, settings.basic_auth_pass.get_secret_value())
    queue = JobQueue(services)
    annotator, webhooks = Annotator(services, offload=queue), WebhookHandler(services, queue)

    def model_factory(**kwargs) -> PromptPolicyModel:
        return PromptPolicyModel(annotator, webhooks, **kwargs)

    app = create_protocol_app(
        model_factory,
        auth=auth,
        webhook_secret=settings.webhook_secret.get_secret_value(),
        max_body_bytes=settings.max_body_bytes,
        name="prompt-policy-backend",
        domain_errors=DOMAIN_ERRORS,
        allow_anonymous_writes=settings.allow_anonymous_writes,
        protected_reads=[ProtectedRead(export.RULES, "ALLOW_ANONYMOUS_EXPORT=1", settings.allow_anonymous_export)],
    )
    app.extensions[SERVICES] = services
    app.extensions[JOBS] = queue
    app.register_blueprint(policies.bp)
    describe(app, policies.OPENAPI_PATHS, policies.OPENAPI_MODELS)
    app.register_blueprint(jobs.bp)
    describe(app, jobs.OPENAPI_PATHS)
    app.register_blueprint(export.bp)
    describe(app, export.OPENAPI_PATHS)
    for live in (quality, spend):
        app.register_blueprint(live.bp)
        describe(app, live.OPENAPI_PATHS)
    dashboard.register(app, DOMAIN_ERRORS)
    describe(app, dashboard.OPENAPI_PATHS)
    observability.instrument(app, services)
    describe(app, observability.OPENAPI_PATHS)
    return app
