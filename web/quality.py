"""``GET /projects/<p>/quality``: the live quality of every version the project was served, as JSON.

Each annotation made in Label Studio is scored against what the backend answered for its task (see
``optimizer.runtime.live``); this route shows the sums per version, newest first: live F1 and its spread, the
first-N window the gate judges, and per control the per-label TP/FP/FN with precision, recall and F1, and for a
single-choice control the confusion table. The dashboard's project page renders the same dict.
"""

from __future__ import annotations

from flask import Blueprint

from ls_protocol import json_response, operation, path_param
from optimizer.runtime.live import LiveQuality
from web.context import services
from web.policies import project_ref
from web.refs import PROJECT_PATTERN

bp = Blueprint("quality", __name__)


@bp.get("/projects/<ref>/quality")
def quality(ref: str):
    return json_response(LiveQuality(services()).report(project_ref(ref)))


OPENAPI_PATHS = {
    "/projects/{ref}/quality": {
        "get": operation(
            "live precision, recall and F1 per label and version, from annotations scored against the served answers",
            params=[path_param("ref", PROJECT_PATTERN)],
        )
    }
}
