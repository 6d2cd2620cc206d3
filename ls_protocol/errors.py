"""The protocol layer's error vocabulary and the one JSON shape every error answer has.

Each error names the ``field`` it is about (``"params.context.result[0].value"``, ``"body"``, ``"project"``) so a
caller can fix the request without reading our source. The status belongs to the error *type*, never to an
instance: code below the HTTP layer raises its own typed domain errors, and the app maps those types to statuses
once (``create_app(domain_errors=...)`` or :func:`map_errors`), so nothing under the web root knows about HTTP.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping

from flask import Blueprint, Flask, Response, g, request

log = logging.getLogger("ls_protocol")


class ProtocolError(Exception):
    """A request the service answers with a 4xx/5xx of this type's ``status`` and a message naming ``field``."""

    status = 400

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidInput(ProtocolError):
    """The request is well-formed but cannot be served as sent (bad label config, missing task data, ...)."""

    status = 400


class InvalidLabelConfig(InvalidInput):
    """The label config cannot be served; the route fills in ``field`` (``schema`` in /setup, else ``label_config``)."""


class NotFound(ProtocolError):
    status = 404


class Conflict(ProtocolError):
    status = 409


class Unavailable(ProtocolError):
    """A dependency the request needs (Redis) is down: a 503, so the caller retries later."""

    status = 503


def json_response(payload: dict, status: int = 200) -> Response:
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), default=str)
    return Response(body, status=status, mimetype="application/json")


def error_response(status: int, message: str, field: str | None = None) -> Response:
    """The one error shape of every route: ``{"error", "status", "field", "request_id"}``."""
    payload = {"error": message, "status": status, "field": field, "request_id": g.get("request_id")}
    return json_response(payload, status)


# A domain error type → its status, or (status, fixed message) for errors whose own text is not for callers.
ErrorMap = Mapping[type[Exception], int | tuple[int, str]]


def map_errors(target: Flask | Blueprint, statuses: ErrorMap) -> None:
    """Answer each domain error type with its status and its message (``exc.field`` if it has one).

    A domain error's own message is written for people and never carries secrets; a fixed message replaces it where
    it would show internals (a Redis connection error names hosts). A 5xx is also logged.
    """
    for kind, answer in statuses.items():
        status, fixed = answer if isinstance(answer, tuple) else (answer, None)

        def handler(exc: Exception, status: int = status, fixed: str | None = fixed) -> Response:
            if status >= 500:
                log.warning("%s %s: %s (%s)", request.method, request.path, exc.__class__.__name__, status)
            message = fixed or getattr(exc, "message", None) or str(exc) or exc.__class__.__name__
            return error_response(status, message, getattr(exc, "field", None))

        target.register_error_handler(kind, handler)
