"""``GET /projects/<id>/export?format=rlvr|preference[&include_judged=1]``: a reward-scoring project as JSON Lines.

Glue like ``policy_api``: the lines are made by ``optimizer.learning.rlvr`` from what Label Studio holds, read with
the server's ``LABEL_STUDIO_URL`` / ``LABEL_STUDIO_API_KEY`` (secrets stay on the server, never in Label Studio or
the request). Behind the app's basic auth like every route but ``/health``. Errors are JSON naming the field:
400 for a bad ``format`` / ``include_judged`` / project id or a config that is not reward-scoring, 503 when Label
Studio is not configured, 502 when it cannot be read.
"""

from __future__ import annotations

import re

from flask import Blueprint, Response, current_app, request

from ls_protocol import InvalidInput
from optimizer.labelstudio.client import LabelStudioClient
from optimizer.learning.rlvr import ExportError, Format, export_project, to_jsonl
from optimizer.state.projects import numeric_id

bp = Blueprint("export", __name__)

_REF = re.compile(r"^[0-9]{1,12}(\.[0-9]{1,20})?$")
_FLAGS = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False, "": False}


@bp.get("/projects/<ref>/export")
def export(ref: str):
    """Label Studio errors are typed (not configured, no such project, unreachable); ``_wsgi`` maps them to 503, 404
    and 502."""
    if not _REF.match(ref):
        raise InvalidInput("project must be a Label Studio project id such as 12 (or its uid 12.1700000000)", "project")
    fmt = request.args.get("format", Format.RLVR.value)
    if fmt not in {f.value for f in Format}:
        raise InvalidInput(f'"format" must be one of {", ".join(f.value for f in Format)}, got {fmt[:40]!r}', "format")
    flag = request.args.get("include_judged", "").strip().lower()
    if flag not in _FLAGS:
        raise InvalidInput('"include_judged" must be 1 or 0 (true or false)', "include_judged")
    settings = current_app.extensions["services"].settings
    ls = LabelStudioClient(
        settings.label_studio_url,
        settings.label_studio_api_key.get_secret_value(),
        timeout=settings.label_studio_timeout,
    )
    try:
        lines = export_project(ls, numeric_id(ref), Format(fmt), _FLAGS[flag])
    except ExportError as exc:
        raise InvalidInput(f"project {ref}: {exc}", "project") from None
    return Response(to_jsonl(lines), mimetype="application/x-ndjson")
