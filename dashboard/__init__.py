"""The dashboard: what the optimiser did, as pages people can look at, over the same data as the JSON API.

``register(app)`` adds the HTML pages (``pages.py``, under ``/dashboard``) and their JSON twins (``api.py``). It is
web glue like ``policy_api.py``: the numbers come from ``optimizer.runtime.overview``, charts are SVG drawn on the
server (``charts.py``), and the buttons are guarded against cross-site requests (``csrf.py``).
"""

from __future__ import annotations

from collections.abc import Mapping

from flask import Flask

from dashboard.api import bp as api
from dashboard.pages import ERRORS
from dashboard.pages import bp as pages


def register(app: Flask, domain_errors: Mapping[type[Exception], int | tuple[int, str]]) -> None:
    """Add the pages and their JSON twins; ``domain_errors`` (type → status) become error pages with those statuses."""
    app.extensions[ERRORS] = domain_errors
    app.register_blueprint(api)
    app.register_blueprint(pages)
