"""``python -m optimizer predict --project <id>``: queue a bulk pre-annotation run and follow it to the end.

The run is the same RQ job ``POST /projects/<id>/predict`` queues (:mod:`optimizer.jobs.bulk`): every task
lacking a prediction of the project's current version, or the ``--tasks`` given, predicted by the RQ workers and
posted to Label Studio. Without a worker listening nothing would ever happen, so the command refuses to queue then.
Exit status: 0 when the run finished with every task predicted, 1 when it failed, was cancelled or finished
with failed tasks (their reasons are in the printed view), 2 for a usage problem.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from optimizer.jobs.queue import JobQueue
from optimizer.jobs.views import JobState, JobView
from optimizer.runtime.services import Services
from optimizer.runtime.startup import start
from web.refs import ProjectRef, RefError


def register(subparsers) -> None:
    parser = subparsers.add_parser("predict", help="pre-annotate a project's tasks in the background (RQ workers)")
    parser.add_argument("--project", required=True, help="Label Studio project id or uid")
    parser.add_argument("--tasks", help="comma-separated task ids (default: every task lacking a current prediction)")
    parser.add_argument("--no-wait", action="store_true", help="print the job id and exit")
    parser.add_argument("--timeout", type=float, default=24 * 3600, help="seconds to wait for the run (default 1 day)")
    parser.set_defaults(func=_predict)


def _task_ids(text: str | None) -> list[int] | None:
    if text is None:
        return None
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ValueError("--tasks must be comma-separated Label Studio task ids, e.g. --tasks 12,13,20")
    return [int(p) for p in parts]


def _predict(args: argparse.Namespace) -> int:
    from rq import Worker

    try:
        tasks = _task_ids(args.tasks)
        ref = ProjectRef.parse(args.project, "--project")
    except RefError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    services = Services(start("cli"))
    jobs = JobQueue(services)
    project = services.projects.resolve(ref.text)
    if not services.projects.known(project):
        print(f"error: unknown project {args.project!r}: connect the backend to it in Label Studio first",
              file=sys.stderr)  # fmt: skip
        return 2
    queue = jobs.bulk_queue
    if Worker.count(connection=services.rq_redis, queue=queue) == 0:
        print(f"error: no RQ worker listens on queue {queue.name!r}: start `python -m optimizer worker` "
              "(make run starts one)", file=sys.stderr)  # fmt: skip
        return 2
    version = services.store.current(project).version
    job = jobs.enqueue_bulk(project, version, tasks, reason="cli")
    print(f"queued bulk run {job} for project {project} with {version}", file=sys.stderr)
    if args.no_wait:
        print(json.dumps({"job": job, "project": project, "version": version}))
        return 0
    return _follow(jobs, job, args.timeout)


def _follow(jobs: JobQueue, job: str, timeout: float) -> int:
    until = time.monotonic() + timeout
    shown = None
    while time.monotonic() < until:
        view = jobs.view(job) or JobView(job, JobState.UNKNOWN)
        progress = view.progress
        line = f"{view.status}: {progress.tasks if progress else {}} of {progress.total if progress else '?'} tasks"
        if line != shown:
            print(line, file=sys.stderr)
            shown = line
        if view.state.ended:
            print(json.dumps(view.to_dict(), indent=2, default=str))
            return 0 if view.state is JobState.FINISHED and not view.failed else 1
        time.sleep(1.0)
    print(f"error: bulk run {job} did not finish within {timeout:.0f} s; it keeps running", file=sys.stderr)
    return 1
