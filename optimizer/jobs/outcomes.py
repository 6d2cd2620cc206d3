"""How each task of a bulk run ends: the outcome counted for it, or the typed failure kept with its reason.

Why apart from the run itself: the chunk job fills these in, the job function (:mod:`optimizer.jobs.functions`)
reads them to decide what RQ retries, and the run record and ``GET /jobs/<id>`` show them; none of those readers
needs the machinery that predicts and posts.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum


class TaskOutcome(StrEnum):
    """How one task of a bulk run ended (a count per run in ``GET /jobs/<id>``, per project in ``/metrics``).

    Tasks that end without a prediction are counted as ``failed_<reason>`` (:meth:`TaskFailure.outcome`)."""

    POSTED = "posted"
    SKIPPED = "skipped"  # already had a prediction of the version (the listing, or the done set)
    SKIPPED_IN_LS = "skipped_in_ls"  # gained one between the listing and the chunk's read (or was deleted)
    MISSING = "missing"  # asked for by id, but not in the project
    SUPERSEDED = "superseded"  # the live policy changed: its predictions would be re-requested anyway
    BUSY = "busy"  # another live job held its claim for too long
    LOST_CLAIM = "lost_claim"  # this chunk's claim lapsed while it predicted: not posted, another job may
    CANCELLED = "cancelled"  # the run was cancelled before this task was posted


class FailureKind(StrEnum):
    """Why a task has no prediction when it is not the LLM's answer (those use ``FailureReason`` values)."""

    LABEL_STUDIO = "label_studio"
    LLM = "llm"
    CONFIG = "config"
    REDIS = "redis"
    INTERNAL = "internal"
    LOST = "lost"  # its chunk job was lost for good (its worker died on every attempt)


@dataclass(frozen=True)
class TaskFailure:
    reason: str  # a FailureReason value (the LLM's answer) or a FailureKind value
    detail: str
    retryable: bool

    @property
    def outcome(self) -> str:
        return f"failed_{self.reason}"


@dataclass
class ChunkResult:
    """One attempt at a chunk: final outcomes, and the tasks that got no prediction with why."""

    outcomes: Counter[str] = field(default_factory=Counter)
    failures: dict[int, TaskFailure] = field(default_factory=dict)
    post_retries: int = 0
    served: str | None = None  # the model_version it posted under

    def fail(self, tasks, reason: str, detail: str, *, retryable: bool) -> None:
        for task in tasks:
            self.failures[int(task)] = TaskFailure(reason, detail, retryable)

    @property
    def retryable(self) -> dict[int, TaskFailure]:
        return {task: f for task, f in self.failures.items() if f.retryable}
