"""One job as the backend shows it: RQ's state, the progress our job functions write into ``job.meta``, and the
result (a :class:`~optimizer.jobs.summary.RunSummary` for a training run) or the failure reason.

``JobQueue.view`` builds a :class:`JobView`; ``GET /jobs/<id>`` answers :meth:`JobView.to_dict`, and the dashboard and
the CLI read its typed fields. The meta stays a dict on the wire (the job functions add fields as runs grow), but
what readers rely on is read here once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from optimizer.jobs.kinds import JobKind, Stored
from optimizer.jobs.summary import RunSummary
from optimizer.state.cancels import Cancel


class JobState(Stored):
    """Where a job (or a whole bulk run) stands: RQ's states, plus ``waiting`` (a follow-up the coalescer reserved),
    ``cancelling`` (asked to stop, not stopped yet) and ``cancelled``. The JSON ``state`` is the value."""

    WAITING = "waiting"
    QUEUED = "queued"
    DEFERRED = "deferred"
    SCHEDULED = "scheduled"  # a chunk waiting out its retry backoff
    STARTED = "started"
    CANCELLING = "cancelling"
    FINISHED = "finished"
    FAILED = "failed"
    STOPPED = "stopped"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"

    @classmethod
    def from_rq(cls, value) -> JobState:
        text = str(getattr(value, "value", value))
        return cls.CANCELLED if text == "canceled" else (cls.of(text) or cls.UNKNOWN)

    @property
    def ended(self) -> bool:
        return self in ENDED


ENDED = frozenset({JobState.FINISHED, JobState.FAILED, JobState.STOPPED, JobState.CANCELLED})


def _int(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class OptimizerStep:
    """The optimiser's latest progress event (``meta["optimizer"]``): its step and calls spent of the budget."""

    step: int | None = None
    calls: int | None = None
    budget: int | None = None

    @classmethod
    def from_meta(cls, meta: dict) -> OptimizerStep:
        event = meta.get("optimizer")
        if not isinstance(event, dict):
            return cls()
        return cls(_int(event.get("step")), _int(event.get("calls")), _int(event.get("budget")))


@dataclass(frozen=True)
class BulkProgress:
    """A bulk run as a whole: its tasks by outcome, its chunk jobs, and a sample of the tasks that failed, with why.

    ``failed`` counts every task that ended without a prediction after its chunk's last attempt (``failed_<reason>``
    outcomes, and the tasks of chunk jobs lost for good); ``retrying`` the chunks waiting out a retry backoff."""

    total: int
    chunks: int
    chunks_active: int
    chunks_failed: int
    tasks: dict[str, int]
    chunks_retrying: int = 0
    failures: tuple[dict, ...] = ()

    @property
    def failed(self) -> int:
        return sum(n for outcome, n in self.tasks.items() if outcome.startswith("failed_"))

    def to_dict(self) -> dict:
        return {"total": self.total, "chunks": self.chunks, "chunks_active": self.chunks_active,
                "chunks_failed": self.chunks_failed, "chunks_retrying": self.chunks_retrying,
                "tasks": dict(self.tasks), "failed": self.failed, "failures": list(self.failures)}  # fmt: skip


@dataclass
class JobView:
    id: str
    state: JobState
    project: str | None = None
    kind: JobKind | None = None
    meta: dict = field(default_factory=dict)
    enqueued_at: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    result: Any = None
    has_result: bool = False  # a listing skips finished jobs' results (a training report is most of a job's size)
    error: str | None = None
    note: str | None = None
    plan_status: str | None = None  # a bulk run: its plan job's own status, beside the run's
    progress: BulkProgress | None = None
    reserved: bool = False  # a training run the coalescer reserved that RQ does not hold (yet, or any more)
    cancel: Cancel | None = None  # who asked it to stop, and when

    @property
    def failed(self) -> int:
        """Tasks of a bulk run that ended without a prediction (0 for other jobs)."""
        return self.progress.failed if self.progress is not None else 0

    @property
    def status(self) -> str:
        """The state in words: ``finished with 3 failed`` (never ``finished`` alone) when tasks failed."""
        if self.state is JobState.FINISHED and self.failed:
            return f"finished with {self.failed} failed"
        return self.state.value

    @property
    def phase(self) -> str | None:
        phase = self.meta.get("phase")
        return phase if isinstance(phase, str) else None

    @property
    def run(self) -> str | None:
        """The bulk run a chunk job belongs to."""
        run = self.meta.get("run")
        return run if isinstance(run, str) else None

    @property
    def done(self) -> int | None:
        return _int(self.meta.get("done"))

    @property
    def total(self) -> int | None:
        return _int(self.meta.get("total"))

    @property
    def optimizer(self) -> OptimizerStep:
        return OptimizerStep.from_meta(self.meta)

    @property
    def summary(self) -> RunSummary | None:
        """A training run's summary, once it finished and its result was fetched."""
        return RunSummary.from_result(self.result) if self.has_result else None

    def to_dict(self) -> dict:
        """What ``GET /jobs/<id>`` answers (a reserved run: only what the coalescer knows)."""
        out: dict = {"id": self.id, "status": self.status, "state": self.state.value, "project": self.project,
                     "kind": self.kind.value if self.kind else self.meta.get("kind")}  # fmt: skip
        if not self.reserved:
            out.update(meta=self.meta, enqueued_at=self.enqueued_at, started_at=self.started_at,
                       ended_at=self.ended_at)  # fmt: skip
        if self.has_result:
            out["result"] = self.result
        optional = {"error": self.error, "note": self.note, "plan_status": self.plan_status}
        out.update({k: v for k, v in optional.items() if v is not None})
        if self.progress is not None:
            out["progress"] = self.progress.to_dict()
        if self.cancel is not None:
            out["cancelled_by"] = self.cancel.to_dict()
        return out
