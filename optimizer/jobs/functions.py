"""The functions RQ runs, one per :class:`~optimizer.jobs.kinds.JobKind` (:data:`FUNCTIONS`), inside the worker.

A training run executes in a work horse the worker forks for it and builds its own :class:`Services` there; bulk
jobs run in threads of the worker itself (``optimizer.jobs.worker``) and share the worker's :class:`Services`
(:func:`use_services`): its Label Studio client, LLM clients and thread pool, instead of paying for them per chunk.
A training run holds the project's lease while it runs (renewed by a heartbeat thread, so a SIGKILLed worker frees
the project when the lease expires), writes progress into ``job.meta``, and on the way out hands the project to the
follow-up run that triggers during the run coalesced into. A bulk chunk holds claims on its tasks
(``optimizer.state.bulk``).

A failure is raised, so RQ marks the job failed; before that its reason goes into ``job.meta["error"]`` in words a
person can act on (the traceback stays in RQ's failed-job registry). A bulk chunk raises only to be retried
(:class:`RetryLater`, for transient failures while attempts remain); what still fails on its last attempt is
recorded per task with its reason, and the chunk ends normally.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass

import redis
from rq import get_current_job
from rq.job import Job

from optimizer.jobs.bulk import BulkRequest, plan_run, run_chunk
from optimizer.jobs.errors import JobError
from optimizer.jobs.kinds import JobKind
from optimizer.jobs.outcomes import ChunkResult, FailureKind, TaskFailure
from optimizer.jobs.queue import JobQueue
from optimizer.jobs.summary import Outcome, RunSummary
from optimizer.jobs.training import train_project
from optimizer.jobs.views import JobState
from optimizer.labelstudio.client import LabelStudioError, LabelStudioUnavailable
from optimizer.runtime.services import Services
from optimizer.settings import Settings, load_settings

log = logging.getLogger("optimizer.jobs.functions")

WORKER_REDIS_TIMEOUT = 5.0  # seconds: a job waits for a slow Redis; a web request must answer within 1 s


def worker_settings(settings: Settings) -> Settings:
    """A worker's own settings. Its bound on LLM calls in flight is the stack-wide limit: ``LLM_CONCURRENCY`` bounds
    a web process, and a bulk worker exists to fill what the stack-wide limit (the one cap) allows. And its Redis
    calls may wait longer than a web request's (``REDIS_TIMEOUT`` is sized for Label Studio's 1 s on ``/health``):
    under load a 0.5 s timeout failed chunks that a moment's patience would have finished."""
    update: dict = {"redis_timeout": max(settings.redis_timeout, WORKER_REDIS_TIMEOUT)}
    if settings.llm_global_concurrency and settings.llm_global_concurrency > settings.llm_concurrency:
        update["llm_concurrency"] = min(256, settings.llm_global_concurrency)
    return settings.model_copy(update=update)


_shared: tuple[int, Services] | None = None


def use_services(services: Services) -> None:
    """Jobs run in this process (not a forked horse) use ``services``: the worker sets it before it starts."""
    global _shared
    _shared = (os.getpid(), services)


def _services() -> Services:
    """The worker's shared services in the worker's own process; fresh ones in a forked work horse, whose copies
    of the parent's connections and thread pools must not be used."""
    if _shared is not None and _shared[0] == os.getpid():
        return _shared[1]
    return Services(worker_settings(load_settings()))


class RetryLater(Exception):
    """A chunk attempt ended with transient failures and attempts remain: RQ queues another after its backoff."""


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


def _internal(kind: str, exc: Exception) -> str:
    return f"internal error in {kind} job: {exc.__class__.__name__}: {str(exc)[:300]}"


def _run(kind: str, body) -> dict:
    job = get_current_job()
    progress = JobProgress(job)
    services = _services()
    try:
        return body(services, job, progress)
    except RetryLater as exc:
        progress(phase="retrying", error=str(exc))
        raise
    except JobError as exc:
        progress(phase="failed", error=str(exc))
        raise
    except Exception as exc:
        progress(phase="failed", error=_internal(kind, exc))
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
        phase = JobState.CANCELLED.value if summary.status is Outcome.CANCELLED else "done"
        progress(phase=phase, promoted=summary.promoted, status=summary.status.value)
        return summary.to_dict()

    return _run("training", body)


def bulk(run_id: str, project: str, version: str, tasks: list[int] | None, skip_annotated: bool, reason: str) -> dict:
    """Plan a bulk pre-annotation run: page through the tasks lacking the version, queueing a chunk job per
    BULK_CHUNK as it goes. Retried, like a chunk, when Label Studio fails for now or its worker died; a retry goes on
    from the last chunk queued."""

    def body(services: Services, job: Job, progress: JobProgress) -> dict:
        request = BulkRequest(project, version, None if tasks is None else tuple(tasks), skip_annotated, reason)
        progress(phase="planning", project=project)
        queue = JobQueue(services)

        def enqueue(chunk_id: str, n: int, part: list[int]) -> str:
            return queue.enqueue_bulk_chunk(run_id, chunk_id, project, version, part)

        try:
            summary = plan_run(services, run_id, request, enqueue,
                               cancelled=lambda: services.cancels.requested(run_id))  # fmt: skip
        except (LabelStudioUnavailable, redis.RedisError) as exc:  # for now: a retry goes on from the last chunk
            why = str(exc) if isinstance(exc, LabelStudioError) else f"Redis: {exc.__class__.__name__}"
            if job.retries_left:
                raise RetryLater(
                    f"listing the tasks failed for now ({why}); {job.retries_left} attempt(s) left"
                ) from None
            raise JobError(why) from None
        except LabelStudioError as exc:
            job.retries_left = 0
            raise JobError(str(exc)) from None
        except Exception:
            job.retries_left = 0  # no retry fixes a refusal or a bug
            raise
        progress(phase=summary["status"], total=summary["total"], chunks=summary["chunks"])
        return summary

    return _run("bulk pre-annotation", body)


def bulk_chunk(run_id: str, project: str, version: str, tasks: list[int]) -> dict:
    """Predict one chunk of a bulk run under its task claims and post the answers to Label Studio.

    A retried attempt does only what the earlier ones left (``meta["remaining"]``). Transient failures with
    attempts left raise :class:`RetryLater`; on the last attempt, and for failures no retry can fix, each task
    left is recorded with its reason. The chunk then closes itself in the run's ledger.
    """

    def body(services: Services, job: Job, progress: JobProgress) -> dict:
        ledger, ttl = services.bulk, services.settings.job_result_ttl
        todo = [int(t) for t in job.meta.get("remaining") or tasks]
        retries_left = int(job.retries_left or 0)
        try:
            result = run_chunk(services, project, version, todo, job.id, progress,
                               cancelled=lambda: services.cancels.requested(run_id))  # fmt: skip
        except JobError as exc:  # the chunk cannot start (its config or project): no retry fixes that
            job.retries_left = 0
            result = ChunkResult()
            result.fail(todo, FailureKind.CONFIG.value, str(exc), retryable=False)
        except redis.RedisError as exc:  # Redis slow or away for a moment: the claims say who holds what
            result = ChunkResult()
            result.fail(todo, FailureKind.REDIS.value, f"Redis: {exc.__class__.__name__}", retryable=True)
        except Exception as exc:  # a bug: recorded for its tasks, never retried, traceback kept by RQ
            job.retries_left = 0
            ledger.fail_tasks(run_id, project, {t: (FailureKind.INTERNAL.value, _internal("bulk", exc)) for t in todo},
                              ttl)  # fmt: skip
            ledger.close_chunk(run_id, job.id)
            raise
        ledger.count(run_id, project, result.outcomes)
        retry = result.retryable if retries_left else {}
        final = {t: f for t, f in result.failures.items() if t not in retry}
        ledger.fail_tasks(run_id, project, {t: (f.reason, f.detail) for t, f in final.items()}, ttl)
        summary = {"status": "done", "version": version, **dict(+result.outcomes), "failed": len(final),
                   "post_retries": result.post_retries}  # fmt: skip
        if retry:
            job.meta["remaining"] = sorted(retry)
            raise RetryLater(_retry_reason(retry, retries_left))
        ledger.close_chunk(run_id, job.id)
        progress(phase="done", **{k: v for k, v in summary.items() if isinstance(v, int)})
        return summary

    return _run("bulk pre-annotation", body)


def _retry_reason(retry: dict[int, TaskFailure], retries_left: int) -> str:
    first = next(iter(retry.values()))
    return (f"{len(retry)} task(s) failed for now ({first.reason}: {first.detail[:200]}); "
            f"retrying, {retries_left} attempt(s) left")  # fmt: skip


# The one table from kind to the function RQ runs for it (RQ stores the function's import path with the job).
FUNCTIONS = {JobKind.TRAIN: train, JobKind.BULK: bulk, JobKind.BULK_CHUNK: bulk_chunk}
