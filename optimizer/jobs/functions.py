"""The functions RQ runs, one per :class:`~optimizer.jobs.kinds.JobKind` (:data:`FUNCTIONS`), inside the worker.

Each job builds its own :class:`Services` from the environment (the worker forks a fresh process per job) and
writes progress into ``job.meta``. A training job holds the project's lease while it runs (renewed by a heartbeat
thread, so a SIGKILLed worker frees the project when the lease expires) and on the way out hands the project to the
follow-up run that triggers during the run coalesced into; a bulk chunk holds claims on its tasks instead
(``optimizer.state.bulk``).

A failure is raised, so RQ marks the job failed; before that its reason goes into ``job.meta["error"]`` in words a
person can act on (the traceback stays in RQ's failed-job registry).
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass

from rq import get_current_job
from rq.job import Job

from optimizer.jobs.bulk import BulkRequest, plan_run, run_chunk
from optimizer.jobs.errors import JobError
from optimizer.jobs.kinds import JobKind
from optimizer.jobs.queue import JobQueue
from optimizer.jobs.summary import Outcome, RunSummary
from optimizer.jobs.training import train_project
from optimizer.runtime.services import Services
from optimizer.settings import load_settings

log = logging.getLogger("optimizer.jobs.functions")


class JobProgress:
    """Merges progress fields into ``job.meta``; saves at most every ``interval`` seconds, and on phase changes."""

    def __init__(self, job: Job | None, interval: float = 0.5) -> None:
        self.job = job
        self.interval = interval
        self._saved_at = 0.0
        self._lock = threading.Lock()

    def __call__(self, **fields) -> None:
        if self.job is None:
            return
        with self._lock:
            phase_changed = "phase" in fields and fields["phase"] != self.job.meta.get("phase")
            self.job.meta.update(fields)
            self.job.meta["updated_at"] = round(time.time(), 3)
            if phase_changed or time.monotonic() - self._saved_at >= self.interval:
                self.flush()

    def flush(self) -> None:
        if self.job is not None:
            self.job.save_meta()
            self._saved_at = time.monotonic()


class Heartbeat(threading.Thread):
    """Renews the project's lease every third of its TTL until stopped; notes when the lease was lost."""

    def __init__(self, services: Services, project: str, job_id: str) -> None:
        super().__init__(name=f"lease-{job_id}", daemon=True)
        self.services, self.project, self.job_id = services, project, job_id
        self.ttl = services.settings.train_lease_ttl
        self.lost = False
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.ttl / 3):
            try:
                if not self.services.coalescer.heartbeat(self.project, self.job_id, self.ttl):
                    self.lost = True
                    log.warning("job %s lost the lease of project %s", self.job_id, self.project)
                    return
            except Exception:  # a Redis blip: try again next beat; the lease outlives two missed beats
                log.warning("job %s: lease heartbeat failed", self.job_id, exc_info=True)

    def stop(self) -> None:
        self._stop_event.set()


@dataclass
class Lease:
    ok: bool
    followup: str | None = None  # when not ok: the run this job's trigger was folded into
    heartbeat: Heartbeat | None = None

    @property
    def lost(self) -> bool:
        return self.heartbeat is not None and self.heartbeat.lost


@contextmanager
def project_lease(services: Services, project: str, job_id: str):
    """Hold the project's lease for the run; afterwards queue the follow-up, whatever happened in between."""
    begin = services.coalescer.begin(project, job_id, services.settings.train_lease_ttl)
    if not begin.ok:
        yield Lease(False, begin.followup)
        return
    beat = Heartbeat(services, project, job_id)
    beat.start()
    try:
        yield Lease(True, heartbeat=beat)
    finally:
        beat.stop()
        JobQueue(services).release(project, job_id, f"follow-up of {job_id}")


def _run(kind: str, body) -> dict:
    job = get_current_job()
    progress = JobProgress(job)
    services = Services(load_settings())
    try:
        return body(services, job, progress)
    except JobError as exc:
        progress(phase="failed", error=str(exc))
        raise
    except Exception as exc:
        progress(phase="failed", error=f"internal error in {kind} job: {exc.__class__.__name__}: {str(exc)[:300]}")
        raise
    finally:
        progress.flush()


def train(project: str) -> dict:
    """One training run (``RunSummary.to_dict()``: plain JSON, readable by any version of the dashboard)."""

    def body(services: Services, job: Job, progress: JobProgress) -> dict:
        with project_lease(services, project, job.id) as lease:
            if not lease.ok:
                progress(phase="coalesced", followup=lease.followup)
                return RunSummary(Outcome.COALESCED, followup=lease.followup).to_dict()
            progress(phase="started", project=project)
            summary = train_project(services, project, job.id, progress, lease_lost=lambda: lease.lost)
        if summary.promoted and summary.live_after and services.settings.repredict_after_promote:
            summary.repredict_job = JobQueue(services).enqueue_repredict(project, summary.live_after)
        progress(phase="done", promoted=summary.promoted, status=summary.status.value)
        return summary.to_dict()

    return _run("training", body)


def bulk(run_id: str, project: str, version: str, tasks: list[int] | None, skip_annotated: bool, reason: str) -> dict:
    """Plan a bulk pre-annotation run: list the tasks lacking the version and queue one chunk job per BULK_CHUNK."""

    def body(services: Services, job: Job, progress: JobProgress) -> dict:
        request = BulkRequest(project, version, None if tasks is None else tuple(tasks), skip_annotated, reason)
        progress(phase="planning", project=project)

        def enqueue(chunk_id: str, n: int, part: list[int]) -> str:
            return JobQueue(services).enqueue_bulk_chunk(run_id, chunk_id, project, version, part)

        summary = plan_run(services, run_id, request, enqueue)
        progress(phase=summary["status"], total=summary["total"], chunks=summary["chunks"])
        return summary

    return _run("bulk pre-annotation", body)


def bulk_chunk(run_id: str, project: str, version: str, tasks: list[int]) -> dict:
    """Predict one chunk of a bulk run under its task claims and post the answers to Label Studio."""

    def body(services: Services, job: Job, progress: JobProgress) -> dict:
        summary = run_chunk(services, run_id, project, version, tasks, job.id, progress)
        progress(phase="done", **{k: v for k, v in summary.items() if isinstance(v, int)})
        return summary

    return _run("bulk pre-annotation", body)


# The one table from kind to the function RQ runs for it (RQ stores the function's import path with the job).
FUNCTIONS = {JobKind.TRAIN: train, JobKind.BULK: bulk, JobKind.BULK_CHUNK: bulk_chunk}
