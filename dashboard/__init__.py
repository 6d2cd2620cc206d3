"""The dashboard: what the optimiser did, as pages people can look at, over the same data as the JSON API.

``register(app)`` adds the HTML pages (``pages.py``, under ``/dashboard``) and their JSON twins (``api.py``). It is
web glue like ``policy_api.py``: the numbers come from ``optimizer.runtime.overview``, charts are SVG drawn on the
server (``charts.py``), and the buttons are guarded against cross-site requests (``csrf.py``).
"""

from __future__ import annotations

from collections.abc import Mapping

from flask import Flask, request

from dashboard.api import bp as api
from dashboard.csrf import CsrfError, check_origin
from dashboard.pages import ERRORS
from dashboard.pages import bp as pages
from ls_protocol import error_response


def register(app: Flask, domain_errors: Mapping[type[Exception], int | tuple[int, str]]) -> None:
    """Add the pages and their JSON twins; ``domain_errors`` (type → status) become error pages with those statuses."""
    app.extensions[ERRORS] = domain_errors
    app.before_request(_refuse_cross_site_writes)
    app.register_blueprint(api)
    app.register_blueprint(pages)


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _refuse_cross_site_writes():
    """Any write a browser sent from another site is refused (see ``csrf.py``); the dashboard's own forms also need
    their token, which ``pages.py`` checks."""
    if request.method in SAFE_METHODS:
        return None
    try:
        check_origin(request)
    except CsrfError as exc:
        return error_response(403, f"refused: {exc}", "Origin")
    return None
