"""What one step of an optimisation run records: each candidate's fate, why the run stopped, the step's outcome.

Why apart from :mod:`optimizer.learning.search`: these are the words of the run report that the dashboard, the
CLI and ``GET /jobs/<id>`` show (``Status`` and ``StopReason`` values), so they are defined once, as types, away
from the loop that produces them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from optimizer.learning.evaluation import Evaluation
from optimizer.serving.policy import Policy


class StopReason(StrEnum):
    """Why a run ended; the report shows the value (with the detail, where there is one)."""

    INITIAL_UNAFFORDABLE = "budget too small to score the initial policy on validation"
    NO_TRAINING = "no training items"
    BUDGET = "budget exhausted"
    WALL_TIME = "wall-time limit reached"
    MAX_STEPS = "reached max_steps"
    PATIENCE = "no new champion"


@dataclass(frozen=True)
class Stop:
    reason: StopReason
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.reason.value}{self.detail}"


class Status(StrEnum):
    """What became of one candidate in a step, as the report records it."""

    INVALID = "invalid"  # dropped by the proposal checks before any call
    ERROR = "error"  # the proposer failed to make it
    DUPLICATE = "duplicate"
    UNAFFORDABLE = "unaffordable"
    GATE_FAILED = "gate_failed"
    PROMOTED = "promoted"
    NOT_PROMOTED = "not_promoted"


@dataclass(frozen=True)
class Candidate:
    """One candidate of a step: a policy to score, or (``status`` set) why there is none to score."""

    kind: str
    policy: Policy | None
    status: Status | None = None
    reason: str | None = None


@dataclass(frozen=True)
class StepResult:
    record: dict
    champion: Policy
    champion_val: Evaluation
    stop: Stop | None = None


def describe(policy: Policy) -> dict:
    return {
        "version": policy.version,
        "instruction": policy.instruction,
        "demos": len(policy.demos),
        "demo_k": policy.demo_k,
        "mode": policy.mode.value,
        **policy.answering(),
    }
