"""What a training run returns: one typed summary, written by the job and read back by the dashboard and the CLI.

RQ keeps a job's return value; the job returns :meth:`RunSummary.to_dict` (plain JSON, so ``GET /jobs/<id>`` can
show it and a result written by an older version of the code still loads) and readers turn it back into a
:class:`RunSummary` with :meth:`RunSummary.from_result`, instead of probing a dict with ``.get()``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from optimizer.jobs.kinds import Stored


class Outcome(Stored):
    """How a training run ended for the live policy; the value is the summary's ``status``."""

    PROMOTED = "promoted"
    REJECTED = "rejected"
    LEASE_LOST = "lease lost"
    STALE = "stale"
    PINNED = "pinned"
    UNCHANGED = "unchanged"
    SKIPPED = "skipped"
    COALESCED = "coalesced"  # the trigger was folded into a run already going; ``followup`` names the next one
    CANCELLED = "cancelled"  # someone asked it to stop (``cancelled_by``); nothing was promoted


@dataclass
class RunSummary:
    status: Outcome
    promoted: bool = False
    reason: str | None = None
    project: str | None = None
    live_before: str | None = None
    start: str | None = None
    seeded_from: str | None = None
    candidate: str | None = None
    # None where the run never got that far (a pinned project is skipped before any call).
    accepted: bool | None = None
    scores: dict | None = None
    calls: int | None = None
    seconds: float | None = None
    gold: dict | None = None
    verifier: str | None = None
    settings: dict | None = None
    judge: dict | None = None
    report: dict | None = None
    live_after: str | None = None
    followup: str | None = None
    repredict_job: str | None = None
    cancelled_by: dict | None = None  # {"by", "at"} of the cancel request a cancelled run honoured

    def to_dict(self) -> dict:
        """Plain JSON: the status as its string, and no key for what this run did not have."""
        out = {k: v for k, v in asdict(self).items() if v is not None}
        out["status"] = str(self.status.value)
        return out

    @classmethod
    def from_result(cls, value) -> RunSummary | None:
        """A job's stored result as a summary; None when it is not one (a bulk run's, or nothing yet)."""
        if not isinstance(value, dict) or Outcome.of(value.get("status")) is None:
            return None
        known = {f.name: f for f in fields(cls)}
        kept = {k: v for k, v in value.items() if k in known}
        for name in ("scores", "report", "gold", "settings", "judge", "cancelled_by"):
            if name in kept and not isinstance(kept[name], dict):
                kept[name] = None
        kept["status"] = Outcome(value["status"])
        kept["promoted"] = bool(kept.get("promoted"))
        return cls(**kept)
