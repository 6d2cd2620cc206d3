"""The RQ worker process (``python -m optimizer worker``): runs every kind of job (training, bulk) from ``RQ_QUEUE``.

It is RQ's standard forking worker (one fresh process per job, so a leak or a crash in one job cannot poison the
next), plus two things: when a job's process dies it releases the job's project at once, and its periodic
maintenance queues the follow-up runs of jobs whose whole worker died (their project lease expired), so a trigger
coalesced into a killed run is not left waiting for the next webhook.
"""

from __future__ import annotations

import logging

import redis
from rq import Worker

from optimizer.jobs.kinds import JobKind
from optimizer.jobs.queue import JobQueue
from optimizer.runtime.services import Services
from optimizer.settings import Settings

log = logging.getLogger("optimizer.jobs.worker")


class BackendWorker(Worker):
    """RQ's worker, plus releasing a dead job's project at once and sweeping for orphaned follow-ups."""

    services: Services | None = None

    def handle_work_horse_killed(self, job, retpid, ret_val, rusage) -> None:
        """The job's process died without cleaning up (OOM killer, SIGKILL): free its project at once.

        Without this the project would wait for the lease to expire. Releasing is safe: the dead process cannot
        promote any more, and the store's compare-and-set stops anything it might have raced.
        """
        super().handle_work_horse_killed(job, retpid, ret_val, rusage)
        if self.services is None:
            return
        try:
            meta = job.get_meta(refresh=True)
            meta["phase"] = "failed"
            meta["error"] = "the process running this job died (killed or out of memory); the live policy is unchanged"
            job.save_meta()
            project = meta.get("project")
            if JobKind.of(meta.get("kind")) is JobKind.TRAIN and project:
                JobQueue(self.services).release(project, job.id, f"follow-up of dead job {job.id}")
        except redis.RedisError as exc:
            log.warning("could not release the project of dead job %s: %s", job.id, exc.__class__.__name__)

    def run_maintenance_tasks(self) -> None:
        super().run_maintenance_tasks()
        self.sweep()

    def sweep(self) -> None:
        if self.services is None:
            return
        try:
            queued = JobQueue(self.services).sweep()
        except redis.RedisError as exc:
            log.warning("sweep for orphaned follow-ups failed: %s", exc.__class__.__name__)
            return
        if queued:
            log.info("queued %d follow-up run(s) left by dead workers: %s", len(queued), ", ".join(queued))


def preload() -> None:
    """Import what jobs use before RQ forks a work horse per job, so each job inherits it instead of paying again.

    label-studio-sdk alone takes ~2 s to import; paid per job it made a 32-task bulk chunk cost ~5 s of overhead
    on a busy 2-core machine (bench/bulk.py).
    """
    import label_studio_sdk.client  # noqa: F401

    import optimizer.jobs.functions  # noqa: F401  (and through it the bulk and training modules)
    from optimizer.labelstudio.labelconfig import warm_up

    warm_up()


def run_worker(settings: Settings, *, burst: bool = False, name: str | None = None) -> bool:
    """Run until stopped (SIGTERM: finish the current job first, as RQ does). ``settings`` come from ``start``."""
    # No socket timeout on the worker's own connection: RQ blocks on the queue for long stretches.
    connection = redis.Redis.from_url(settings.redis_url)
    worker = BackendWorker(
        [settings.rq_queue],
        connection=connection,
        name=name,
        maintenance_interval=max(10, int(settings.train_lease_ttl)),
    )
    worker.services = Services(settings)
    preload()
    worker.sweep()
    log.info("worker %s listening on queue %s", worker.name, settings.rq_queue)
    return worker.work(burst=burst, logging_level=settings.log_level)
