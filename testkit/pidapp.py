"""The production app with each answer tagged by the gunicorn worker's pid (``X-Worker-Pid``), for tests only.

The hot-swap test must see every worker answer; the production app does not reveal pids.
"""

from __future__ import annotations

import os

from _wsgi import create_app


class TagPid:
    def __init__(self, app) -> None:
        self.app = app

    def __call__(self, environ, start_response):
        def tagged(status, headers, exc_info=None):
            return start_response(status, [*headers, ("X-Worker-Pid", str(os.getpid()))], exc_info)

        return self.app(environ, tagged)


app = TagPid(create_app())
