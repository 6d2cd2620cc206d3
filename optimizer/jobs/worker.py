"""The RQ worker process (``python -m optimizer worker``): training runs and bulk pre-annotation, training first.

It listens to the training queue and then the bulk queue (``--queues`` picks one of them; compose scales bulk
workers apart), so a ``START_TRAINING`` never waits behind a 10,000-task run's chunks: RQ always takes the first
non-empty queue in order. Two ways of running a job:

- **A training run gets a forked work horse** (RQ's standard worker): a leak or a crash in the optimiser cannot
  poison the next job, and when the horse dies the worker releases its project at once.
- **Bulk jobs run in threads of the worker itself**, up to ``BULK_THREADS`` at once. A chunk's own work is a few
  Label Studio requests and a few Redis calls around its LLM calls; a fork per chunk (plus building clients again)
  cost more than the LLM time, and between chunks the LLM's slots sat idle. With threads, the next chunk claims and
  reads while the last one posts, the chunks share one LLM client and Label Studio client, and the stack-wide LLM
  limit (a Redis semaphore) stays the only cap on calls in flight. A chunk's timeout is a timer in its thread
  (signals reach only the main thread); the worker renews the heartbeats of every running chunk, so RQ's
  abandoned-job check still retries chunks of a worker that died.

Its periodic maintenance also queues the follow-up runs of jobs whose whole worker died (their project lease
expired), so a trigger coalesced into a killed run is not left waiting for the next webhook; and it runs RQ's
scheduler, which re-queues chunks waiting out a retry backoff.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Sequence

import redis
from rq import Queue, Worker
from rq.exceptions import DequeueTimeout
from rq.scheduler import RQScheduler
from rq.timeouts import BaseDeathPenalty, JobTimeoutException, TimerDeathPenalty, UnixSignalDeathPenalty
from rq.utils import as_text

from optimizer.jobs.kinds import QUEUE_OF, JobKind, QueueRole
from optimizer.jobs.queue import JobQueue
from optimizer.runtime.services import Services
from optimizer.settings import Settings

log = logging.getLogger("optimizer.jobs.worker")

BEAT = 10.0  # seconds between heartbeats of the chunks running in threads (RQ's execution TTL is 60 s past this)


class ThreadSafeDeathPenalty(BaseDeathPenalty):
    """A job's timeout wherever it runs: SIGALRM in a main thread (it interrupts a blocking wait, such as the worker's
    wait for its work horse), a timer raising in the job's thread anywhere else (signals reach only the main one)."""

    def __new__(cls, timeout, exception=JobTimeoutException, **kwargs):
        chosen = UnixSignalDeathPenalty if threading.current_thread() is threading.main_thread() else TimerDeathPenalty
        return chosen(timeout, exception, **kwargs)


def runs_in_thread(job) -> bool:
    return QUEUE_OF.get(JobKind.of(job.meta.get("kind"))) is QueueRole.BULK


class OrderedQueue(Queue):
    """RQ's queue, dequeued in order across several queues with RQ's reliable move for each.

    RQ pops from several queues with one ``BLPOP``: a job handed to a worker at the instant it is killed is then in
    no list at all, lost for good (seen in tests/test_bulk.py when a SIGKILLed worker had not yet been torn down).
    With one queue RQ uses ``BLMOVE`` into the queue's intermediate list instead, which its maintenance re-queues
    when the worker died holding the job. This does that for each queue: the earlier ones are looked at without
    blocking, the last one blocks for at most ``POLL`` seconds, so a job on an earlier queue (a training run) waits at
    most that long for a worker that is otherwise idle, and never behind a job of a later queue."""

    POLL = 1  # seconds

    @classmethod
    def dequeue_any(cls, queues, timeout, connection, job_class=None, serializer=None, death_penalty_class=None):
        queues = list(queues)
        deadline = None if timeout is None else time.monotonic() + timeout
        fetch = {"job_class": job_class, "serializer": serializer, "death_penalty_class": death_penalty_class}
        while True:
            for n, queue in enumerate(queues):
                wait = None
                if n == len(queues) - 1 and deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise DequeueTimeout(timeout, [q.key for q in queues])
                    wait = max(1, min(cls.POLL, int(left)))
                try:
                    moved = cls.lmove(connection, queue.key, wait)
                except DequeueTimeout:
                    moved = None
                if moved is None:
                    continue
                queue_key, job_id = (as_text(part) for part in moved)
                found = cls._fetch_dequeued_job(connection, queue_key, job_id, **fetch)
                if found is not None:
                    return found
                break  # the job's hash is gone (expired): look again from the first queue
            else:
                if deadline is None:  # burst mode: one look at every queue
                    return None


class BulkThreads:
    """Runs bulk jobs in up to ``size`` threads of the worker, keeping their RQ heartbeats alive."""

    def __init__(self, worker: BackendWorker, size: int) -> None:
        self.worker = worker
        self.slots = threading.BoundedSemaphore(size)
        self.running: dict[str, tuple] = {}  # job id -> (job, execution, thread)
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._beat: threading.Thread | None = None

    @property
    def busy(self) -> bool:
        with self._lock:
            return bool(self.running)

    def submit(self, job, queue) -> None:
        """Start ``job`` in a thread as soon as one is free (waiting keeps this worker's heartbeat alive)."""
        while not self.slots.acquire(timeout=BEAT):
            self.worker.heartbeat()
        execution = self.worker.prepare_execution(job)
        thread = threading.Thread(target=self._run, args=(job, queue, execution), name=f"job-{job.id}", daemon=True)
        with self._lock:
            self.running[job.id] = (job, execution, thread)
            if self._beat is None:
                self._beat = threading.Thread(target=self._heartbeats, name="bulk-heartbeats", daemon=True)
                self._beat.start()
        thread.start()

    def _run(self, job, queue, execution) -> None:
        try:
            self.worker.perform_job(job, queue, execution)
        except Exception:  # perform_job records failures itself; this is RQ's own bookkeeping failing
            log.exception("bulk job %s: the worker could not record its end", job.id)
        finally:
            with self._lock:
                self.running.pop(job.id, None)
                self._idle.notify_all()
            self.slots.release()

    def _heartbeats(self) -> None:
        while True:
            with self._lock:
                self._idle.wait(BEAT)
                running = list(self.running.values())
            for job, execution, _ in running:
                try:
                    self.worker.maintain_heartbeats(job, execution)
                except redis.RedisError as exc:  # a blip: the execution outlives several missed beats
                    log.warning("bulk job %s: heartbeat failed: %s", job.id, exc.__class__.__name__)
            with contextlib.suppress(redis.RedisError):  # the worker's key outlives several missed beats
                self.worker.heartbeat()

    def wait(self, any_one: bool = False) -> None:
        """Until every running job ended (or, with ``any_one``, until one did)."""
        with self._lock:
            count = len(self.running)
            while self.running and (not any_one or len(self.running) == count):
                self._idle.wait(1.0)


class SchedulerThread(threading.Thread):
    """RQ's scheduler (it re-queues jobs whose retry backoff has passed) in a thread of the worker, not a forked
    process: one process per worker, and a killed worker takes its scheduler with it. Every worker runs one; a Redis
    lock per queue makes one of them the scheduler of that queue, and the others take over within ``RELOCK`` seconds
    of its lock expiring."""

    RELOCK = 10.0

    def __init__(self, connection, queue_names: Sequence[str]) -> None:
        super().__init__(name="rq-scheduler", daemon=True)
        self.scheduler = RQScheduler(list(queue_names), connection=connection)
        self.names = set(queue_names)
        self._stop_event = threading.Event()

    def run(self) -> None:
        scheduler, tried = self.scheduler, 0.0
        scheduler.register_birth()
        while not self._stop_event.wait(scheduler.interval):
            try:
                if scheduler.acquired_locks != self.names and time.monotonic() - tried > self.RELOCK:
                    scheduler.acquire_locks()
                    tried = time.monotonic()
                if scheduler.acquired_locks:
                    scheduler.heartbeat()
                    scheduler.enqueue_scheduled_jobs()
            except redis.RedisError as exc:  # a blip: the locks outlive a minute of missed beats
                log.warning("scheduler: %s", exc.__class__.__name__)

    def stop(self) -> None:
        self._stop_event.set()
        with contextlib.suppress(redis.RedisError):
            self.scheduler.stop()


class BackendWorker(Worker):
    """RQ's worker, plus bulk jobs in threads, releasing a dead job's project at once, and the follow-up sweep."""

    services: Services | None = None
    death_penalty_class = ThreadSafeDeathPenalty

    def __init__(self, *args, bulk_threads: int = 1, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.threads = BulkThreads(self, bulk_threads)
        self.scheduler_thread = SchedulerThread(self.connection, self.queue_names())
        self._cold = False

    def bootstrap(self, *args, **kwargs) -> None:
        super().bootstrap(*args, **kwargs)
        self.scheduler_thread.start()

    def prepare_job_execution(self, job, remove_from_intermediate_queue: bool = False) -> None:
        # Every job is moved through its queue's intermediate list (OrderedQueue), RQ's own for one queue only:
        # take it out once the job is registered as started, or RQ's maintenance would fail it a minute later.
        super().prepare_job_execution(job, remove_from_intermediate_queue=True)

    def execute_job(self, job, queue) -> None:
        if runs_in_thread(job):
            self.threads.submit(job, queue)
        else:
            super().execute_job(job, queue)

    def dequeue_job_and_maintain_ttl(self, timeout, max_idle_time=None):
        while True:
            found = super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
            # Burst mode (no timeout) stops at the first empty look; a bulk job still running may queue more (a
            # plan queues its chunks as it pages), so look again once it is done.
            if found is not None or timeout is not None or not self.threads.busy:
                return found
            self.threads.wait(any_one=True)

    def request_force_stop(self, signum, frame):
        self._cold = True
        super().request_force_stop(signum, frame)

    def teardown(self) -> None:
        if not self.is_horse:
            if not self._cold:
                self.threads.wait()  # a warm shutdown lets running chunks finish (and release their claims)
            self.scheduler_thread.stop()
        super().teardown()

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
    """Import what jobs use before RQ forks a work horse per training job, so each inherits it instead of paying
    again (label-studio-sdk alone takes ~2 s to import)."""
    import label_studio_sdk.client  # noqa: F401

    import optimizer.jobs.functions  # noqa: F401  (and through it the bulk and training modules)
    from optimizer.labelstudio.labelconfig import warm_up

    warm_up()


def run_worker(
    settings: Settings,
    *,
    burst: bool = False,
    name: str | None = None,
    roles: Sequence[QueueRole] = (QueueRole.TRAINING, QueueRole.BULK),
) -> bool:
    """Run until stopped (SIGTERM: finish the running jobs first, as RQ does). ``settings`` come from ``start``."""
    from optimizer.jobs.functions import use_services, worker_settings

    services = Services(worker_settings(settings))
    queues = JobQueue(services).queues
    names = [queues[role].name for role in roles]
    # No socket timeout on the worker's own connection: RQ blocks on the queue for long stretches.
    connection = redis.Redis.from_url(settings.redis_url)
    worker = BackendWorker(
        names,
        connection=connection,
        queue_class=OrderedQueue,
        name=name,
        maintenance_interval=max(10, int(settings.train_lease_ttl)),
        bulk_threads=settings.bulk_threads,
    )
    worker.services = services
    use_services(services)
    preload()
    worker.sweep()
    limits = services.settings.llm_limits
    log.info("worker %s listening on %s (in this order); bulk jobs %d at a time in threads; LLM calls: %d at a time "
             "in this worker, %s stack-wide", worker.name, ", ".join(names), settings.bulk_threads, limits.per_process,
             limits.stack_wide or "no limit")  # fmt: skip
    return worker.work(burst=burst, logging_level=settings.log_level)
