"""HTTP API for stopping jobs: a Flask blueprint the app factory registers (``GET /jobs/<id>`` is in ``policies``).

- ``POST /jobs/<id>/cancel``   ask a training run or a bulk run to stop (a chunk's id cancels its whole run); 202
                               with the job's view, ``cancelled_by`` naming who asked. 404 for an unknown job, 409
                               naming its status for one that already ended.

It is a write like rollback or train: behind basic auth, refused without it unless ``ALLOW_ANONYMOUS_WRITES``, and
refused when a browser says it comes from another origin (``web.dashboard.csrf``). The job stops where stopping is
safe (``optimizer.state.cancels``); the view shows ``cancelling`` until it has.
"""

from __future__ import annotations

from flask import Blueprint

from ls_protocol import json_response, operation, path_param
from web.context import caller, jobs
from web.refs import JOB_PATTERN, JobRef

bp = Blueprint("jobs", __name__)


@bp.post("/jobs/<job_id>/cancel")
def cancel(job_id: str):
    view = jobs().cancel(JobRef.parse(job_id).text, caller())
    return json_response(view.to_dict(), 202)


OPENAPI_PATHS = {
    "/jobs/{job_id}/cancel": {
        "post": operation(
            "stop a training or bulk run (409 if it already ended)",
            ok=202,
            params=[path_param("job_id", JOB_PATTERN)],
        )
    },
}
