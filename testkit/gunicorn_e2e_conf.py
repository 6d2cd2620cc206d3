"""gunicorn config for end-to-end tests: the project's own ``gunicorn.conf.py``, plus a request log for assertions.

The project's file runs first, in this namespace, exactly as if gunicorn had loaded it (hooks, metrics directory,
log config and all); command-line flags still win over it. Then a ``post_request`` hook appends one tab-separated
line per answered request (method, path, status, user agent) to ``$E2E_REQUEST_LOG``. It is a hook rather than
gunicorn's access log because the project may route or silence ``gunicorn.access`` through its log config.
"""

import os
from pathlib import Path

_PROJECT_CONF = Path(__file__).resolve().parents[1] / "gunicorn.conf.py"
if _PROJECT_CONF.is_file():
    exec(compile(_PROJECT_CONF.read_text(encoding="utf-8"), str(_PROJECT_CONF), "exec"))

_project_post_request = globals().get("post_request")
_REQUEST_LOG = os.environ["E2E_REQUEST_LOG"]


def post_request(worker, req, environ, resp):
    if _project_post_request is not None:
        _project_post_request(worker, req, environ, resp)
    agent = environ.get("HTTP_USER_AGENT", "-").replace("\t", " ")
    line = f"{req.method}\t{req.path}\t{resp.status_code}\t{agent}\n"
    with open(_REQUEST_LOG, "a", encoding="utf-8") as log:
        log.write(line)
