"""``GET /projects/<id>/export?format=rlvr|preference[&include_judged=1]``: a reward-scoring project as JSON Lines.

Glue like ``web.policies``: the lines are made by ``optimizer.learning.rlvr`` from what Label Studio holds, read with
the server's ``LABEL_STUDIO_URL`` / ``LABEL_STUDIO_API_KEY`` (secrets stay on the server, never in Label Studio or
the request). That token usually sees far more than this backend serves, so the route is guarded three ways:

- only projects this backend has seen at ``/setup`` (the project registry in Redis) are exported: any other id is a
  404, even when the token could read it;
- it is a protected read (``ls_protocol.ProtectedRead``): with basic auth it needs the credentials like every route
  but ``/health``; without basic auth it answers 403 unless ``ALLOW_ANONYMOUS_EXPORT=1``;
- every export is logged (who, which project, format, lines) on the ``export`` logger.

Errors are JSON naming the field: 400 for a bad ``format`` / ``include_judged`` / project id or a config that is not
reward-scoring, 404 for a project the backend does not know, 503 when Label Studio is not configured, 502 when it
cannot be read.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, g, request

from ls_protocol import InvalidInput, operation, path_param, query_param
from optimizer.learning.rlvr import ExportError, Format, export_project, to_jsonl
from web.context import services
from web.policies import project_ref
from web.refs import PROJECT_PATTERN, ProjectRef

log = logging.getLogger("export")
bp = Blueprint("export", __name__)
RULE = "/projects/<ref>/export"
RULES = frozenset({RULE})  # the protected reads of this module (web.app hands them to the protocol layer)
_FLAGS = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False, "": False}


@bp.get(RULE)
def export(ref: str):
    """Label Studio errors are typed (not configured, no such project, unreachable); ``web.app`` maps them to 503,
    404 and 502."""
    project = project_ref(ref)  # 400 if malformed, 404 unless Label Studio connected it to this backend
    number = ProjectRef.parse(project).require_number()
    fmt = request.args.get("format", Format.RLVR.value)
    if fmt not in {f.value for f in Format}:
        raise InvalidInput(f'"format" must be one of {", ".join(f.value for f in Format)}, got {fmt[:40]!r}', "format")
    flag = request.args.get("include_judged", "").strip().lower()
    if flag not in _FLAGS:
        raise InvalidInput('"include_judged" must be 1 or 0 (true or false)', "include_judged")
    try:
        lines = export_project(services().label_studio, number, Format(fmt), _FLAGS[flag])
    except ExportError as exc:
        raise InvalidInput(f"project {ref}: {exc}", "project") from None
    log.info(
        "export of project %s (%s%s) by %s from %s: %d lines",
        project,
        fmt,
        ", judged included" if _FLAGS[flag] else "",
        g.get("principal", "anonymous"),
        request.remote_addr,
        len(lines),
        extra={"project": project, "principal": g.get("principal"), "lines": len(lines)},
    )
    return Response(to_jsonl(lines), mimetype="application/x-ndjson")


OPENAPI_PATHS = {
    "/projects/{ref}/export": {
        "get": operation(
            "a reward-scoring project as JSON Lines (only projects connected to this backend; see docs/trust.md)",
            params=[path_param("ref", PROJECT_PATTERN), query_param("format"), query_param("include_judged")],
        )
    },
}
