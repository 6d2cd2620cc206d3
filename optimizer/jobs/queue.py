"""Putting jobs into RQ (training runs, bulk pre-annotation runs and their chunks), and reading their state back,
from web workers and RQ workers alike.

``Coalescer`` (pure Redis Lua) decides *whether* a trigger needs a new run; this module turns its decisions into RQ
jobs of a :class:`~optimizer.jobs.kinds.JobKind`, each running the function ``functions.FUNCTIONS`` names for it.
Importing that table does not import the optimiser's loop: a training job loads it when it runs.

Crash windows and how they close:
- a web worker dies between reserving a run and enqueueing it: the reservation points at a job RQ does not have.
  The next trigger after ``STALE_AFTER`` seconds finds it missing, drops it and reserves a new run. The same happens
  when an RQ worker dies after dequeuing a run but before taking the project's lease, once RQ has marked that job
  failed (its abandoned-job check, when the dead worker's heartbeat lapses);
- an RQ worker dies mid-run: its lease expires (``TRAIN_LEASE_TTL``); the next trigger, or any worker's sweep,
  queues the follow-up it left behind. The RQ job itself is marked failed by RQ's abandoned-job handling.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from rq import Queue, Retry
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from optimizer.jobs.errors import JobEnded, UnknownJob
from optimizer.jobs.kinds import QUEUE_OF, JobKind, QueueRole
from optimizer.jobs.summary import Outcome, RunSummary
from optimizer.jobs.views import BulkProgress, JobState, JobView
from optimizer.runtime.services import Services
from optimizer.state.cancels import RequestOutcome
from optimizer.state.coalesce import Trigger, TriggerStatus

log = logging.getLogger("optimizer.jobs.queue")

ACTIVE = frozenset({JobStatus.QUEUED, JobStatus.STARTED, JobStatus.DEFERRED, JobStatus.SCHEDULED})
STALE_AFTER = 10.0


def _job_id(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", text)


# Job states a listing can ask for, and the ``rq.Queue`` attribute of the registry holding each (queued: the queue).
REGISTRIES = {
    "started": "started_job_registry",
    "deferred": "deferred_job_registry",
    "scheduled": "scheduled_job_registry",
    "finished": "finished_job_registry",
    "failed": "failed_job_registry",
}
ACTIVE_STATES = ("started", "queued", "deferred", "scheduled")
LISTED = (*ACTIVE_STATES, "finished", "failed")


def repredict_job_id(namespace: str, project: str, version: str) -> str:
    """One after-promotion bulk run per (project, version): enqueueing it twice is a no-op.

    RQ's job keys (``rq:job:<id>``) are not under ``REDIS_NAMESPACE``, so the namespace is part of the id: two
    backends sharing one Redis with the same project and version would otherwise see each other's run as theirs
    (found when two test namespaces promoted the same version and the second read the first's job).
    """
    return _job_id(f"repredict-{namespace}-{project}-{version}")


# Job states whose job may still do something; a listing asks Redis for cancel requests of these only.
LIVE = frozenset({JobState.WAITING, JobState.QUEUED, JobState.DEFERRED, JobState.SCHEDULED, JobState.STARTED})


class JobQueue:
    """Every kind of job goes through here: training runs on the training queue; bulk runs (and the re-predict
    after a promotion) and their chunks on the bulk queue (:class:`~optimizer.jobs.kinds.QueueRole`)."""

    def __init__(self, services: Services) -> None:
        self.connection = services.rq_redis
        self.coalescer = services.coalescer
        self.settings = services.settings
        self.bulk = services.bulk
        self.cancels = services.cancels
        self.queue = Queue(self.settings.rq_queue, connection=self.connection)
        self.bulk_queue = Queue(self.settings.bulk_queue, connection=self.connection)
        self.queues = {QueueRole.TRAINING: self.queue, QueueRole.BULK: self.bulk_queue}

    # -- triggers -----------------------------------------------------------------------------------------------
    def trigger(self, project: str, *, threshold: int = 0, reason: str = "") -> Trigger:
        decision = self.coalescer.trigger(project, threshold=threshold, stale=self._stale_queued(project))
        if decision.status is TriggerStatus.QUEUED:
            self.ensure_enqueued(project, decision.job_id, reason or "trigger")
        return decision

    def release(self, project: str, job_id: str, why: str) -> str | None:
        """A run ended (or died): free the project and queue the follow-up run its triggers left, if any."""
        followup = self.coalescer.finish(project, job_id)
        if followup:
            self.ensure_enqueued(project, followup, why)
        return followup

    def train_now(self, project: str, reason: str) -> dict:
        """A person asked for a run (HTTP API, CLI): trigger it past any threshold and say what became of it."""
        decision = self.trigger(project, reason=reason)
        return {"project": project, "status": decision.status, "job": decision.job}

    def _stale_queued(self, project: str) -> str | None:
        job_id, queued_at = self.coalescer.queued(project)
        if not job_id or time.time() - queued_at < STALE_AFTER:
            return None
        status = self.status_of(job_id)
        return job_id if status not in ACTIVE else None

    def status_of(self, job_id: str) -> JobStatus | None:
        try:
            return Job.fetch(job_id, connection=self.connection).get_status()
        except NoSuchJobError:
            return None

    def ensure_enqueued(self, project: str, job_id: str, reason: str) -> None:
        """Put a reserved run into RQ unless RQ already has it active (idempotent)."""
        status = self.status_of(job_id)
        if status in ACTIVE:
            return
        if status is not None:
            log.warning("job %s for project %s is already %s; not re-running it", job_id, project, status)
            return
        self._enqueue(
            JobKind.TRAIN, (project,), job_id, f"train project {project}", {"project": project, "reason": reason}
        )
        log.info("queued training job %s for project %s (%s)", job_id, project, reason)

    def enqueue_bulk(
        self,
        project: str,
        version: str,
        tasks: list[int] | None = None,
        *,
        skip_annotated: bool = False,
        reason: str = "api",
        job_id: str | None = None,
    ) -> str:
        """Queue a bulk pre-annotation run (its plan job); returns the run id, which ``GET /jobs/<id>`` shows.

        With ``job_id`` given, a run already queued or done under that id is not queued again.
        """
        job_id = job_id or _job_id(f"bulk-{uuid.uuid4().hex[:12]}")
        if self.status_of(job_id) is None:
            meta = {"project": project, "version": version, "reason": reason,
                    "tasks": None if tasks is None else len(tasks)}  # fmt: skip
            args = (job_id, project, version, tasks, skip_annotated, reason)
            self._enqueue(JobKind.BULK, args, job_id, f"pre-annotate {project} with {version} ({reason})", meta)
        return job_id

    def enqueue_repredict(self, project: str, version: str) -> str:
        """After a promotion: the same bulk run, for the project's unlabelled tasks."""
        job_id = repredict_job_id(self.settings.redis_namespace, project, version)
        return self.enqueue_bulk(project, version, skip_annotated=True, reason="promotion", job_id=job_id)

    def enqueue_bulk_chunk(self, run_id: str, chunk_id: str, project: str, version: str, tasks: list[int]) -> str:
        meta = {"project": project, "run": run_id, "version": version, "tasks": len(tasks)}
        args = (run_id, project, version, tasks)
        self._enqueue(JobKind.BULK_CHUNK, args, chunk_id, f"pre-annotate {len(tasks)} tasks of {project}", meta)
        return chunk_id

    def _enqueue(self, kind: JobKind, args: tuple, job_id: str, description: str, meta: dict) -> None:
        # Imported here, not at the top: the job functions queue their follow-ups through this module.
        from optimizer.jobs.functions import FUNCTIONS

        retries = self.settings.bulk_retries if QUEUE_OF[kind] is QueueRole.BULK else 0
        self.queues[QUEUE_OF[kind]].enqueue_call(
            FUNCTIONS[kind],
            args=args,
            job_id=job_id,
            timeout=self.settings.job_timeout,
            result_ttl=self.settings.job_result_ttl,
            failure_ttl=self.settings.job_result_ttl,
            description=description,
            meta={**meta, "kind": kind.value, "phase": "queued"},
            # A bulk job is retried after a transient failure it raises, and when its worker died (RQ's abandoned-job
            # check); the job itself turns retries off for anything else (functions.bulk, functions.bulk_chunk).
            retry=Retry(max=retries, interval=self.settings.bulk_retry_intervals()) if retries else None,
        )

    # -- cancelling ---------------------------------------------------------------------------------------------
    def cancel(self, job_id: str, by: str) -> JobView:
        """Ask a job to stop (a chunk's whole run, if given a chunk); returns its view, cancel request included.

        Raises :class:`UnknownJob` (404) and :class:`JobEnded` (409, naming the status) when there is nothing to
        stop. The job itself stops where it is safe: a bulk chunk before it claims or posts, a training run at its
        next optimiser step, and a run that has started promoting is past stopping (:mod:`optimizer.state.cancels`).
        """
        view = self.view(job_id)
        if view is None:
            raise UnknownJob(f"no job {job_id!r} (unknown, or its result expired)")
        if view.kind is JobKind.BULK_CHUNK and view.run:
            view = self.view(view.run) or view
        if view.state.ended:
            raise JobEnded(f"job {view.id} is already {view.status}; there is nothing to cancel")
        reply = self.cancels.request(view.id, by)
        if reply.outcome is RequestOutcome.TOO_LATE:
            raise JobEnded(f"job {view.id} is already promoting its result; there is nothing left to cancel")
        log.info("job %s: cancel requested by %s (%s)", view.id, by, reply.outcome.value,
                 extra={"job": view.id, "project": view.project})  # fmt: skip
        return self.view(view.id) or view

    def sweep(self) -> list[str]:
        """Queue the follow-ups of runs whose worker died (their lease expired). Safe to run anywhere, any time."""
        queued = []
        for project, job_id in self.coalescer.orphans():
            self.ensure_enqueued(project, job_id, "follow-up of a run whose worker died")
            queued.append(job_id)
        return queued

    # -- reading ------------------------------------------------------------------------------------------------
    def view(self, job_id: str) -> JobView | None:
        """What ``GET /jobs/<id>`` shows: RQ's state and our progress meta, or the reservation if not queued yet."""
        try:
            job = Job.fetch(job_id, connection=self.connection)
        except NoSuchJobError:
            view = self._reserved(job_id)
            return self._with_cancels([view])[0] if view is not None else None
        out = _view(job)
        if out.kind is JobKind.BULK:
            self._bulk_view(job.id, out)
        return self._with_cancels([out])[0]

    def _with_cancels(self, views: list[JobView]) -> list[JobView]:
        """Who asked each still-live job (and each bulk run) to stop; a live job asked to is ``cancelling``."""
        asked = [v for v in views if v.state in LIVE or v.kind is JobKind.BULK]
        for view in asked:
            view.cancel = view.cancel or self.cancels.requested(view.id)
            if view.cancel is not None and view.state in LIVE:
                view.state = JobState.CANCELLING
        return views

    def jobs(self, states: tuple[str, ...] = LISTED, limit: int = 200, *, results: bool = False) -> list[JobView]:
        """This queue's jobs in ``states`` (``queued`` or ``REGISTRIES`` names), newest first, at most ``limit``.

        Read-only like ``/metrics``: registries are read without RQ's ``cleanup()``, so looking never moves a job.
        A job that expired between the listing and the fetch is left out. Finished jobs' results (a training run's
        report is the bulk of it) are fetched only with ``results``; a listing rarely needs them (``bench/dashboard``).
        """
        ids: list[str] = []
        for queue in self.queues.values():
            for state in states:
                if state == "queued":
                    ids += queue.get_job_ids()
                else:
                    ids += getattr(queue, REGISTRIES[state]).get_job_ids(cleanup=False)
        found = Job.fetch_many(list(dict.fromkeys(ids)), connection=self.connection)
        views = [_view(job, results) for job in found if job is not None]
        views.sort(key=lambda v: v.enqueued_at or "", reverse=True)
        return views[:limit]

    def active(self) -> list[JobView]:
        """Running, queued and waiting jobs with their progress: what the dashboard's Live page shows."""
        return self._with_cancels(self.jobs(ACTIVE_STATES))

    def _bulk_view(self, run_id: str, out: JobView) -> None:
        """A bulk run is finished when its chunk jobs are, not when its plan is: the state and counts of the whole
        run. Only the chunks that have not ended are looked up in RQ (``bulk:run:<id>:open``)."""
        run = self.bulk.run(run_id)
        if run is None:
            return
        open_ids = self.bulk.open_chunks(run_id)
        found = Job.fetch_many(open_ids, connection=self.connection) if open_ids else []
        states = [JobState.from_rq(job.get_status(refresh=False)) if job else None for job in found]
        active = sum(1 for state in states if state in LIVE)
        retrying = sum(1 for state in states if state is JobState.SCHEDULED)
        lost = [job for job, state in zip(found, states, strict=True) if state is None or state.ended]
        tasks = dict(run["tasks"])
        lost_tasks = sum(int(job.meta.get("tasks") or 0) for job in lost if job is not None)
        if lost_tasks:
            tasks["failed_lost"] = tasks.get("failed_lost", 0) + lost_tasks
        plan = out.state
        out.plan_status = plan.value
        out.cancel = self.cancels.requested(run_id)
        if plan in LIVE or active:
            out.state = JobState.STARTED
        elif out.cancel is not None:
            out.state = JobState.CANCELLED
        else:
            out.state = JobState.FINISHED if plan is JobState.FINISHED else plan
        total = run.get("total") or 0
        failures = tuple(self.bulk.failures(run_id)) if any(k.startswith("failed_") for k in tasks) else ()
        chunks = run["chunks"]["queued"]
        out.progress = BulkProgress(total, chunks, active, len(lost), tasks, retrying, failures)
        if lost and not active:
            out.error = (f"{len(lost)} of {chunks} chunk jobs were lost (their worker died on every attempt); "
                         "queue the run again to finish their tasks")  # fmt: skip

    def _reserved(self, job_id: str) -> JobView | None:
        project = self.coalescer.project_of(job_id)
        if project is None:
            return None
        state = self.coalescer.status(project)
        view = JobView(job_id, JobState.UNKNOWN, project, JobKind.TRAIN, reserved=True, note="expired or lost")
        if state["followup"] == job_id:
            view.state, view.note = JobState.WAITING, f"runs when the current run {state['running'] or '(ended)'} ends"
        elif state["queued"] == job_id:
            view.state, view.note = JobState.QUEUED, None
        return view


def _view(job: Job, result: bool = True) -> JobView:
    """One job as ``GET /jobs/<id>`` shows it: RQ's state, our progress meta, and the result or failure reason.

    ``job`` was just fetched, so its status is read from that fetch, not asked of Redis again (one round trip per
    job saved in a listing: ``bench/dashboard``)."""
    status = job.get_status(refresh=False)
    meta = job.get_meta(refresh=False)
    project = meta.get("project")
    out = JobView(
        id=job.id,
        state=JobState.from_rq(status),
        project=project if isinstance(project, str) else None,
        kind=JobKind.of(meta.get("kind")),
        meta=meta,
        enqueued_at=_iso(job.enqueued_at),
        started_at=_iso(job.started_at),
        ended_at=_iso(job.ended_at),
    )
    if status == JobStatus.FINISHED and result:
        out.result, out.has_result = job.return_value(), True
        summary = RunSummary.from_result(out.result)
        if summary is not None and summary.status is Outcome.CANCELLED:
            out.state = JobState.CANCELLED
    elif status == JobStatus.FINISHED and meta.get("phase") == JobState.CANCELLED.value:
        out.state = JobState.CANCELLED  # a listing skips results; the job's last phase says it
    elif status == JobStatus.FAILED:
        out.error = meta.get("error") or _last_line(job)
    return out


def _iso(value) -> str | None:
    return value.isoformat() if value is not None else None


def _last_line(job: Job) -> str:
    result = job.latest_result()
    text = (getattr(result, "exc_string", None) or "").strip()
    return text.splitlines()[-1][:500] if text else "failed"
