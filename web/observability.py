"""Web glue for observability: request ids in logs, one access-log line per request, HTTP metrics and ``/metrics``.

It lives in the web package rather than in ``ls_protocol`` (which knows nothing about this product) or in
``optimizer/`` (which knows nothing about Flask). ``/metrics`` sits behind the same Basic auth as every route but
``/health``, because the protocol app's auth check runs before any route.
"""

from __future__ import annotations

import contextlib
import logging
import time

from flask import Flask, Response, g, request

from ls_protocol import operation
from optimizer.logconfig import request_id
from optimizer.runtime import telemetry
from optimizer.runtime.services import Services

access = logging.getLogger("access")
QUIET_ROUTES = frozenset({"/health", "/metrics"})  # probed constantly; logged at DEBUG
OPENAPI_PATHS = {"/metrics": {"get": operation("Prometheus metrics (text format)")}}


def instrument(app: Flask, services: Services) -> None:
    settings = services.settings
    queues = (settings.rq_queue, settings.bulk_queue)
    state = telemetry.RedisStateCollector(
        services.redis, settings.redis_namespace, queues, first_n=settings.live_gate_annotations
    )

    @app.before_request
    def _bind_request_id() -> None:
        # Runs after the protocol app's own hook (which sets g.request_id and checks auth).
        g.log_token = request_id.set(g.get("request_id"))

    @app.after_request
    def _observe(response: Response) -> Response:
        route = request.url_rule.rule if request.url_rule is not None else "unmatched"
        seconds = time.perf_counter() - g.get("started", time.perf_counter())
        telemetry.observe_request(request.method, route, response.status_code, seconds)
        level = logging.DEBUG if route in QUIET_ROUTES else logging.INFO
        if access.isEnabledFor(level):  # /health is probed constantly: build nothing for a line nobody keeps
            access.log(
                level,
                "%s %s %s %.1fms",
                request.method,
                request.path,
                response.status_code,
                seconds * 1000,
                extra={
                    "request_id": g.get("request_id"),
                    "method": request.method,
                    "path": request.path,
                    "status": response.status_code,
                    "duration_ms": round(seconds * 1000, 2),
                },
            )
        return response

    @app.teardown_request
    def _unbind_request_id(exc: BaseException | None) -> None:
        token = g.pop("log_token", None)
        if token is not None:
            with contextlib.suppress(ValueError):  # set in another context: nothing to undo here
                request_id.reset(token)

    @app.get("/metrics")
    def prometheus_metrics() -> Response:
        return Response(telemetry.render(state), mimetype=None, content_type=telemetry.CONTENT_TYPE)
