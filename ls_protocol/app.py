"""The Flask app factory serving a :class:`LabelStudioMLBase` model over Label Studio's ML backend protocol.

Routes (payloads as recorded from Label Studio 1.23.2, see ``shared/ls-protocol``):
- ``GET /health`` and ``GET /``: liveness, unauthenticated only for ``/health`` (Label Studio probes it, 1 s timeout);
- ``POST /setup``: returns the model version for a project and label config;
- ``POST /predict``: one result per task, in order, all carrying the same ``model_version`` as ``/setup``;
- ``POST /webhook``: every Label Studio action; answers at once, the model decides what to queue;
- ``POST /train``: the legacy training call, treated as ``START_TRAINING``;
- ``GET /versions``: the versions the model knows.

Every error is JSON with a message. Bad input (not JSON, not an object, missing fields, a body over the size
limit, a config the model refuses) is a 4xx; only a bug is a 500, and its traceback goes to the log, not the client.
Nothing happens at import time: tests build as many apps as they like.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.wsgi import LimitedStream

from .auth import BasicAuth, secret_matches
from .base import LabelStudioMLBase
from .body import read_object
from .errors import ErrorMap, InvalidInput, InvalidLabelConfig, ProtocolError, error_response, json_response, map_errors
from .openapi import PROTOCOL_MODELS, PROTOCOL_PATHS, describe, document
from .requests import (
    PredictRequest,
    SetupRequest,
    TrainRequest,
    WebhookProject,
    WebhookRequest,
    is_project_ref,
    validate,
)

log = logging.getLogger("ls_protocol")

ModelFactory = Callable[..., LabelStudioMLBase]
PUBLIC_PATHS = frozenset({"/health"})
WEBHOOK_PATHS = frozenset({"/webhook"})
# Writes Label Studio itself makes; without basic auth they stay open (its default connection has no credentials).
PROTOCOL_WRITES = frozenset({"/setup", "/predict", "/webhook", "/train"})
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ANONYMOUS = "anonymous"  # ``g.principal`` of a request served without basic auth


@dataclass(frozen=True)
class ProtectedRead:
    """Reads that are not harmless (they hand out data the caller could not see otherwise): without basic auth
    they answer 403 like a write, unless the product opened them on purpose (``open``).

    ``rules`` are Flask URL rules as the product registered them (``/projects/<ref>/export``), so the protocol layer
    needs to know nothing about what they serve; ``opt_in`` is the setting the 403 names (``ALLOW_X=1``).
    """

    rules: frozenset[str]
    opt_in: str
    open: bool = False


def project_uid(project: WebhookProject) -> str | None:
    """Label Studio names a project ``<id>.<created_at as unix seconds>`` in /setup and /predict.

    Webhooks carry the project object instead; rebuilding the same uid from it keeps one key per project across
    all routes, and keeps two Label Studio instances that share a backend (and reuse ids) apart.
    """
    if project.id is None:
        return None
    if project.created_at:
        try:
            stamp = datetime.fromisoformat(project.created_at.replace("Z", "+00:00"))
            return f"{project.id}.{int(stamp.timestamp())}"
        except (ValueError, OverflowError, OSError):
            pass
    return project.id


# Bytes of a refused body read and dropped so the connection stays usable (see ``_drain``).
DRAIN_AT_LEAST = 64 * 1024 * 1024


def _drain(stream, limit: int) -> None:
    """Read and drop whatever of the body the route did not read, up to ``limit`` bytes (nothing, usually).

    gunicorn itself discards at most 64 KiB of an unread body and otherwise closes the connection after the answer,
    without saying so in the answer's headers: a client reusing the keep-alive connection for its next request (as
    Label Studio's ``requests`` session does) then sees "connection reset" instead of this 413. Reading the rest keeps
    the connection in a known state; past ``limit`` (a hostile upload) the close is the right outcome.
    """
    if stream is None:
        return
    left = limit
    try:
        while left > 0:
            chunk = stream.read(min(left, 1024 * 1024))
            if not chunk:
                return
            left -= len(chunk)
    except (OSError, ValueError, HTTPException):
        # A client that went away mid-body (werkzeug's ClientDisconnected): nothing is left to keep usable.
        return


def _unread_body():
    """What is left of this request's body, as a stream that ends where the body ends."""
    try:
        return request.stream
    except RequestEntityTooLarge:
        # Over MAX_CONTENT_LENGTH, Flask refuses to hand out the stream, and the route read nothing of it.
        raw, length = request.environ.get("wsgi.input"), request.content_length
        if raw is None:
            return None
        if request.environ.get("wsgi.input_terminated"):
            return raw
        return LimitedStream(raw, length) if length else None


def install_error_handlers(app: Flask, max_body_bytes: int) -> None:
    """Every error of every route (blueprints included) in the one shape of :func:`error_response`."""

    @app.errorhandler(ProtocolError)
    def _protocol(exc: ProtocolError):
        return error_response(exc.status, exc.message, exc.field)

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(exc):
        return error_response(413, f"request body is larger than the limit of {max_body_bytes} bytes", "body")

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        if exc.code == 404:
            return error_response(404, f"path {request.path!r} matches no route", "path")
        if exc.code == 405:
            return error_response(405, f"method {request.method} is not allowed on this path", "method")
        return error_response(exc.code or 500, exc.description or exc.name)

    @app.errorhandler(RecursionError)
    def _too_deep(exc: RecursionError):
        return error_response(400, "request is nested too deeply to process", "body")

    @app.errorhandler(Exception)
    def _bug(exc: Exception):
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error_response(500, "internal error; see the server log for this request id")


def create_app(
    model_factory: ModelFactory,
    *,
    auth: BasicAuth | None = None,
    webhook_secret: str = "",
    max_body_bytes: int = 32 * 1024 * 1024,
    name: str = "ls_protocol",
    domain_errors: ErrorMap | None = None,
    allow_anonymous_writes: bool = False,
    protected_reads: Iterable[ProtectedRead] = (),
) -> Flask:
    """The protocol app. ``domain_errors`` maps the model's own error types to statuses (see :func:`map_errors`).

    Every request gets ``g.principal``: the basic-auth user it passed as, ``"webhook-secret"``, or ``"anonymous"``
    (no auth configured), for routes that keep an audit line of who did what."""
    guarded = tuple(protected_reads)
    app = Flask(name, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = max_body_bytes
    app.json.ensure_ascii = False

    @app.before_request
    def _identify_and_authorize():
        g.request_id = request.headers.get("X-Request-ID") or uuid.uuid4().hex[:16]
        g.started = time.perf_counter()
        g.principal = ANONYMOUS
        if request.path in PUBLIC_PATHS:
            return None
        if request.path in WEBHOOK_PATHS and secret_matches(request.headers.get("X-Webhook-Secret"), webhook_secret):
            g.principal = "webhook-secret"
            return None
        if auth is None:
            return _anonymous()
        if auth.check(request.headers.get("Authorization")):
            g.principal = auth.user
            return None
        response = error_response(
            401, "authentication required: send HTTP basic auth in the Authorization header", "Authorization"
        )
        response.headers["WWW-Authenticate"] = 'Basic realm="ml-backend"'
        return response

    @app.after_request
    def _tag(response: Response) -> Response:
        response.headers["X-Request-ID"] = g.get("request_id", "")
        # A request refused before its body was read (413, 401, an unknown project...) leaves the body unread.
        # ``request.stream`` is bounded by Content-Length (or the server's own end of body) and knows what the route
        # already read; the raw ``wsgi.input`` of a server that keeps the socket open would block here forever.
        _drain(_unread_body(), max(DRAIN_AT_LEAST, 2 * max_body_bytes))
        return response

    def _anonymous() -> Response | None:
        """No basic auth configured: the Label Studio routes stay open (Label Studio connects without auth by
        default), but a set ``webhook_secret`` still guards ``/webhook``, every other write (rollback, pin,
        train...) needs ``allow_anonymous_writes``, and each :class:`ProtectedRead` its own opt-in: most reads are
        harmless, changing what is served (or handing out what Label Studio holds) is not."""
        if request.path in WEBHOOK_PATHS and webhook_secret:
            return error_response(
                401, "webhook secret required: send it in the X-Webhook-Secret header", "X-Webhook-Secret"
            )
        rule = request.url_rule.rule if request.url_rule is not None else None
        for guard in guarded:
            if rule in guard.rules and not guard.open:
                return error_response(
                    403,
                    f"this read needs authentication: set BASIC_AUTH_USER and BASIC_AUTH_PASS (and send them in the "
                    f"Authorization header), or {guard.opt_in} to let anyone who reaches this port read it",
                    "Authorization",
                )
        if request.method in READ_METHODS or request.path in PROTOCOL_WRITES or allow_anonymous_writes:
            return None
        return error_response(
            403,
            "this write needs authentication: set BASIC_AUTH_USER and BASIC_AUTH_PASS (and send them in the "
            "Authorization header), or ALLOW_ANONYMOUS_WRITES=1 to let anyone change policies",
            "Authorization",
        )

    install_error_handlers(app, max_body_bytes)
    map_errors(app, domain_errors or {})
    describe(app, PROTOCOL_PATHS, PROTOCOL_MODELS)

    @app.get("/openapi.json")
    def openapi():
        return json_response(document(app, name))

    def model_for(project: str | None, label_config: str | None, extra_params: dict | None = None, field=""):
        try:
            return model_factory(project_id=project, label_config=label_config, extra_params=extra_params)
        except InvalidLabelConfig as exc:
            exc.field = exc.field or field or "label_config"
            exc.message = f'"{exc.field}": {exc.message}'
            raise

    @app.get("/health")
    @app.get("/")
    def health():
        model = model_factory(project_id=None, label_config=None)
        return json_response({"status": "UP", "model_class": type(model).__name__, **model.health()})

    @app.post("/setup")
    def setup():
        data = validate(SetupRequest, read_object())
        if not data.schema_.strip():
            raise InvalidInput('"schema" is empty: expected the label config XML', "schema")
        model = model_for(data.project, data.schema_, data.extra_params, field="schema")
        model.configure(data.extra_params)
        return json_response({"model_version": model.model_version})

    @app.post("/predict")
    def predict():
        data = validate(PredictRequest, read_object())
        model = model_for(data.project, data.label_config, data.extra_params)
        tasks = [task.model_dump() for task in data.tasks]
        results = model.predict(tasks, context=data.context) if tasks else []
        if len(results) != len(tasks):
            # Label Studio silently stores nothing on a count mismatch; fail loudly instead.
            raise RuntimeError(f"model returned {len(results)} results for {len(tasks)} tasks")
        return json_response({"results": results, "model_version": model.model_version})

    @app.post("/webhook")
    def webhook():
        raw = read_object()
        data = validate(WebhookRequest, raw)
        model = model_for(project_uid(data.project) if data.project is not None else None, None)
        outcome = model.fit(data.action, raw) or {}
        return json_response({"action": data.action, **outcome}, 201)

    @app.post("/train")
    def train():
        raw = read_object(required=False)
        data = validate(TrainRequest, raw)
        model = model_for(data.project, data.label_config)
        outcome = model.fit("START_TRAINING", raw) or {}
        return json_response({"action": "START_TRAINING", **outcome}, 201)

    @app.get("/versions")
    def versions():
        project = request.args.get("project") or None
        if project is not None and not is_project_ref(project):
            raise InvalidInput('"project" must be a Label Studio project id or uid', "project")
        model = model_factory(project_id=project, label_config=None)
        return json_response({"versions": model.versions(), "model_version": model.model_version})

    return app
