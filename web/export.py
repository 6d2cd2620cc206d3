"""``GET /projects/<id>/export?format=rlvr|preference[&include_judged=1]``: a reward-scoring project as JSON Lines.

Glue like ``web.policies``: the lines are made by ``optimizer.learning.rlvr`` from what Label Studio holds, read with
the server's ``LABEL_STUDIO_URL`` / ``LABEL_STUDIO_API_KEY`` (secrets stay on the server, never in Label Studio or
the request). Behind the app's basic auth like every route but ``/health``. Errors are JSON naming the field:
400 for a bad ``format`` / ``include_judged`` / project id or a config that is not reward-scoring, 503 when Label
Studio is not configured, 502 when it cannot be read.
"""

from __future__ import annotations

from flask import Blueprint, Response, request

from ls_protocol import InvalidInput, operation, path_param, query_param
from optimizer.learning.rlvr import ExportError, Format, export_project, to_jsonl
from web.context import services
from web.refs import PROJECT_PATTERN, ProjectRef

bp = Blueprint("export", __name__)
_FLAGS = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False, "": False}


@bp.get("/projects/<ref>/export")
def export(ref: str):
    """Label Studio errors are typed (not configured, no such project, unreachable); ``web.app`` maps them to 503,
    404 and 502."""
    number = ProjectRef.parse(ref).require_number()
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
    return Response(to_jsonl(lines), mimetype="application/x-ndjson")


OPENAPI_PATHS = {
    "/projects/{ref}/export": {
        "get": operation(
            "a reward-scoring project as JSON Lines",
            params=[path_param("ref", PROJECT_PATTERN), query_param("format"), query_param("include_judged")],
        )
    },
}
