"""``GET /projects/<p>/spend``: what the project spent on LLM calls per UTC day, role and profile, as JSON.

Tokens come from each provider's ``usage``; prices from the profile, else the vendored price table (see
``optimizer.runtime.spend``). The answer also names the prices in force and the project's ``daily_spend_limit``.
"""

from __future__ import annotations

from flask import Blueprint, request

from ls_protocol import InvalidInput, json_response, operation, path_param, query_param
from optimizer.project_settings import ProfileGone
from optimizer.runtime import spend
from optimizer.runtime.services import Services
from web.context import services
from web.policies import project_ref
from web.refs import PROJECT_PATTERN

bp = Blueprint("spend", __name__)
MAX_DAYS = 400


def project_spend(here: Services, project: str, days: int = 14) -> dict:
    try:
        chosen = here.project_settings(project)
    except ProfileGone:
        chosen = None
    return spend.report(here.spend, here.settings, project, chosen, days)


@bp.get("/projects/<ref>/spend")
def project_spend_route(ref: str):
    project = project_ref(ref)
    days = request.args.get("days", "14")
    if not days.isdigit() or not 1 <= int(days) <= MAX_DAYS:
        raise InvalidInput(f'"days" must be a number from 1 to {MAX_DAYS}', "days")
    return json_response(project_spend(services(), project, int(days)))


OPENAPI_PATHS = {
    "/projects/{ref}/spend": {
        "get": operation(
            "LLM spend per UTC day, role and profile, with the prices in force and the daily limit",
            params=[path_param("ref", PROJECT_PATTERN), query_param("days", {"type": "integer"})],
        )
    }
}
