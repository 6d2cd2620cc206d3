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

import json
import logging
import time
import uuid
from collections.abc import Callable
from datetime import datetime

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from .auth import BasicAuth, secret_matches
from .base import LabelStudioMLBase
from .errors import InvalidInput

log = logging.getLogger("ls_protocol")

ModelFactory = Callable[..., LabelStudioMLBase]
PUBLIC_PATHS = frozenset({"/health"})
WEBHOOK_PATHS = frozenset({"/webhook"})


def json_response(payload: dict, status: int = 200) -> Response:
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return Response(body, status=status, mimetype="application/json")


def error(status: int, message: str) -> Response:
    return json_response({"error": message, "status": status, "request_id": g.get("request_id")}, status)


def _body() -> dict:
    """The request body as a JSON object, or an InvalidInput naming what is wrong."""
    raw = request.get_data(cache=True)  # raises RequestEntityTooLarge past MAX_CONTENT_LENGTH
    if not raw:
        raise InvalidInput("request body is empty; expected a JSON object")
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInput(f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise InvalidInput("request body is nested too deeply") from None
    if not isinstance(data, dict):
        raise InvalidInput(f"request body must be a JSON object, got {type(data).__name__}")
    return data


def project_uid(project: dict) -> str | None:
    """Label Studio names a project ``<id>.<created_at as unix seconds>`` in /setup and /predict.

    Webhooks carry the project object instead; rebuilding the same uid from it keeps one key per project across
    all routes, and keeps two Label Studio instances that share a backend (and reuse ids) apart.
    """
    if "id" not in project:
        return None
    created = project.get("created_at")
    if isinstance(created, str) and created:
        try:
            stamp = datetime.fromisoformat(created.replace("Z", "+00:00"))
            return f"{project['id']}.{int(stamp.timestamp())}"
        except ValueError:
            pass
    return str(project["id"])


def _project(data: dict) -> str | None:
    project = data.get("project")
    if project is None or project == "":
        return None
    if isinstance(project, dict):  # webhook payloads carry the whole project
        return project_uid(project)
    if not isinstance(project, str | int) or isinstance(project, bool):
        raise InvalidInput('"project" must be a string or a number')
    return str(project)


def _tasks(data: dict) -> list[dict]:
    if "tasks" not in data:
        raise InvalidInput('missing "tasks": expected a list of Label Studio tasks')
    tasks = data["tasks"]
    if not isinstance(tasks, list):
        raise InvalidInput('"tasks" must be a list')
    for i, task in enumerate(tasks):
        if not isinstance(task, dict):
            raise InvalidInput(f"tasks[{i}] must be an object")
        if not isinstance(task.get("data"), dict):
            raise InvalidInput(f'tasks[{i}] has no "data" object')
    return tasks


def _label_config(data: dict, key: str) -> str | None:
    config = data.get(key)
    if config is not None and not isinstance(config, str):
        raise InvalidInput(f'"{key}" must be the label config XML as a string')
    return config


def create_app(
    model_factory: ModelFactory,
    *,
    auth: BasicAuth | None = None,
    webhook_secret: str = "",
    max_body_bytes: int = 32 * 1024 * 1024,
    name: str = "ls_protocol",
) -> Flask:
    app = Flask(name)
    app.config["MAX_CONTENT_LENGTH"] = max_body_bytes
    app.json.ensure_ascii = False

    @app.before_request
    def _identify_and_authorize():
        g.request_id = request.headers.get("X-Request-ID") or uuid.uuid4().hex[:16]
        g.started = time.perf_counter()
        if auth is None or request.path in PUBLIC_PATHS:
            return None
        if auth.check(request.headers.get("Authorization")):
            return None
        if request.path in WEBHOOK_PATHS and secret_matches(request.headers.get("X-Webhook-Secret"), webhook_secret):
            return None
        response = error(401, "authentication required")
        response.headers["WWW-Authenticate"] = 'Basic realm="ml-backend"'
        return response

    @app.after_request
    def _tag(response: Response) -> Response:
        response.headers["X-Request-ID"] = g.get("request_id", "")
        return response

    @app.errorhandler(InvalidInput)
    def _invalid(exc: InvalidInput):
        return error(exc.status, exc.message)

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(exc):
        return error(413, f"request body is larger than the limit of {max_body_bytes} bytes")

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        return error(exc.code or 500, exc.description or exc.name)

    @app.errorhandler(Exception)
    def _bug(exc: Exception):
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error(500, "internal error; see the server log for this request id")

    def model_for(data: dict | None = None, config_key: str = "label_config") -> LabelStudioMLBase:
        data = data or {}
        return model_factory(
            project_id=_project(data),
            label_config=_label_config(data, config_key),
            extra_params=data.get("extra_params"),
        )

    @app.get("/health")
    @app.get("/")
    def health():
        model = model_factory(project_id=None, label_config=None)
        return json_response({"status": "UP", "model_class": type(model).__name__, **model.health()})

    @app.post("/setup")
    def setup():
        data = _body()
        if not isinstance(data.get("schema"), str) or not data["schema"].strip():
            raise InvalidInput('missing "schema": expected the label config XML')
        model = model_for(data, "schema")
        return json_response({"model_version": model.model_version})

    @app.post("/predict")
    def predict():
        data = _body()
        tasks = _tasks(data)
        params = data.get("params")
        params = {} if params is None else params
        if not isinstance(params, dict):
            raise InvalidInput('"params" must be an object')
        context = params.get("context")
        if context is not None and not isinstance(context, dict):
            raise InvalidInput('"params.context" must be an object or null')
        model = model_for(data)
        results = model.predict(tasks, context=context) if tasks else []
        if len(results) != len(tasks):
            # Label Studio silently stores nothing on a count mismatch; fail loudly instead.
            raise RuntimeError(f"model returned {len(results)} results for {len(tasks)} tasks")
        return json_response({"results": results, "model_version": model.model_version})

    @app.post("/webhook")
    def webhook():
        data = _body()
        action = data.get("action")
        if not isinstance(action, str) or not action:
            raise InvalidInput('missing "action": expected a Label Studio webhook action name')
        model = model_for(data)
        outcome = model.fit(action, data) or {}
        return json_response({"action": action, **outcome}, 201)

    @app.post("/train")
    def train():
        data = _body()
        model = model_for(data)
        outcome = model.fit("START_TRAINING", data) or {}
        return json_response({"action": "START_TRAINING", **outcome}, 201)

    @app.get("/versions")
    def versions():
        model = model_factory(project_id=request.args.get("project") or None, label_config=None)
        return json_response({"versions": model.versions(), "model_version": model.model_version})

    return app
