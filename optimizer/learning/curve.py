"""The reward curve of one optimisation run, read from its report: what the dashboard plots and ``/runs/<id>`` returns.

The report (``optimize``'s, kept in the training job's result) records every step as it happened; this module only
re-reads it into one point per step, so the chart, the JSON and the CLI's ``report.json`` can never disagree:

- the parent's score on the step's training minibatch;
- each candidate's minibatch score and, if it passed the minibatch gate, its validation score, with its status
  (promoted, not_promoted, gate_failed, invalid, ...), the reason, its answer mode and the LLM calls it costs per
  100 served tasks;
- the champion's validation score after the step (the initial policy's before any step).

Scores are the run's mean reward (0..1). A step that stopped early (budget exhausted) still gets its point, so the
curve has exactly one point per recorded step.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

ACCEPTED = "promoted"


@dataclass(frozen=True)
class CandidatePoint:
    kind: str
    version: str | None
    status: str
    reason: str
    minibatch: float | None
    val: float | None
    instruction: str | None = None
    mode: str | None = None  # who answers under it: llm, ranker or cascade (serving.modes.Mode)
    llm_calls_per_100: float | None = None  # what it costs to serve, measured on its last evaluation

    @property
    def accepted(self) -> bool:
        return self.status == ACCEPTED


@dataclass(frozen=True)
class StepPoint:
    step: int
    parent: str | None
    parent_minibatch: float | None
    champion: str | None
    champion_val: float | None
    candidates: tuple[CandidatePoint, ...] = field(default_factory=tuple)
    stop: str | None = None


@dataclass(frozen=True)
class Curve:
    steps: tuple[StepPoint, ...]
    initial_val: float | None
    final_val: float | None
    initial_test: float | None
    final_test: float | None
    stop: str | None
    mode: str | None

    def to_dict(self) -> dict:
        out = asdict(self)
        for step, point in zip(out["steps"], self.steps, strict=True):
            for entry, candidate in zip(step["candidates"], point.candidates, strict=True):
                entry["accepted"] = candidate.accepted
        return out


def _reward(metrics) -> float | None:
    value = metrics.get("reward") if isinstance(metrics, dict) else None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _number(value) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def reward_curve(report: dict) -> Curve:
    """One point per step of the run's (final) search, plus the initial and final validation and test scores."""
    run = report.get("run") or {}
    test = report.get("test") or {}
    champion_val = _reward(run.get("initial_val"))
    initial_val = champion_val
    steps = []
    for record in run.get("steps") or ():
        candidates = []
        for entry in record.get("candidates") or ():
            candidate = CandidatePoint(
                kind=str(entry.get("kind", "")),
                version=entry.get("version"),
                status=str(entry.get("status", "")),
                reason=str(entry.get("reason", "")),
                minibatch=_number(entry.get("minibatch")),
                val=_number(entry.get("val")),
                instruction=entry.get("instruction"),
                mode=entry.get("mode") if isinstance(entry.get("mode"), str) else None,
                llm_calls_per_100=_number(entry.get("llm_calls_per_100")),
            )
            if candidate.accepted and candidate.val is not None:
                champion_val = candidate.val
            candidates.append(candidate)
        steps.append(
            StepPoint(
                step=int(record.get("step", len(steps) + 1)),
                parent=record.get("parent"),
                parent_minibatch=_number(record.get("parent_minibatch")),
                champion=record.get("champion"),
                champion_val=champion_val,
                candidates=tuple(candidates),
                stop=record.get("stop"),
            )
        )
    final_val = _reward(run.get("champion_val"))
    return Curve(
        steps=tuple(steps),
        initial_val=initial_val,
        final_val=final_val if final_val is not None else champion_val,
        initial_test=_reward(test.get("initial")),
        final_test=_reward(test.get("best")),
        stop=run.get("stop"),
        mode=report.get("mode"),
    )
