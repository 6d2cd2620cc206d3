"""``python -m optimizer jobs ...``: look at a job, or stop it.

    python -m optimizer jobs show   JOB_ID
    python -m optimizer jobs cancel JOB_ID

``cancel`` is ``POST /jobs/<id>/cancel`` without the web service: it writes the cancel request into Redis, where
the running job sees it (a training run at its next step, a bulk run before its next claim or post), and records
``cli`` as who asked. Exit status: 0 when the request stands, 1 when the job already ended (the message names its
status), 2 for an unknown job or a malformed id.
"""

from __future__ import annotations

import argparse
import json
import sys

from optimizer.jobs.errors import JobEnded, UnknownJob
from optimizer.jobs.queue import JobQueue
from optimizer.runtime.services import Services
from optimizer.runtime.startup import start
from web.refs import JobRef, RefError

REQUESTER = "cli"


def register(subparsers) -> None:
    jobs = subparsers.add_parser("jobs", help="show or cancel a training or bulk run")
    actions = jobs.add_subparsers(dest="action", required=True)
    for name, help in (("show", "a job's status, progress and result"), ("cancel", "stop a training or bulk run")):
        parser = actions.add_parser(name, help=help)
        parser.add_argument("job_id", help="the job id (a chunk's id names its whole run)")
        parser.set_defaults(func=_jobs)


# Exit status per refusal: a job that ended is the caller's news (1); a bad or unknown id is a usage problem (2).
EXIT = {JobEnded: 1, UnknownJob: 2, RefError: 2}


def _jobs(args: argparse.Namespace) -> int:
    try:
        job_id = JobRef.parse(args.job_id, "JOB_ID").text
        queue = JobQueue(Services(start("cli")))
        view = queue.cancel(job_id, REQUESTER) if args.action == "cancel" else queue.view(job_id)
        if view is None:
            raise UnknownJob(f"no job {job_id!r} (unknown, or its result expired)")
    except (RefError, UnknownJob, JobEnded) as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return EXIT[type(exc)]
    if args.action == "cancel":
        print(f"cancel requested for job {view.id} ({view.status}); it stops at its next safe point", file=sys.stderr)
    print(json.dumps(view.to_dict(), indent=2, default=str))
    return 0
