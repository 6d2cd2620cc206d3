"""Cancelling a job: one Redis key per job that every process sees, and the one race it must settle.

``POST /jobs/<id>/cancel``, ``python -m optimizer jobs cancel`` and the dashboard's button write the request
(:meth:`CancelRegistry.request`); the job polls it where stopping is safe (a bulk chunk before it claims and before
it posts, a training run at each optimiser step) and ends with the status ``cancelled``. The key outlives the job
(``JOB_RESULT_TTL``), so the job's view can say who cancelled it.

The race: a training run whose cancel arrives while it promotes must not both promote and say "cancelled". Both
sides write the same key with set-if-absent in one Lua script: the run marks it ``committed`` just before it
promotes (:meth:`CancelRegistry.commit`), and whichever write comes first wins. A cancel that finds ``committed``
is refused (the caller answers 409); a run that finds a cancel promotes nothing.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from enum import StrEnum

import redis

from optimizer.state.keys import KeyMap, Script
from optimizer.state.replies import text

_SET_IF_ABSENT = """
local held = redis.call('GET', k_flag)
if held then return held end
redis.call('SET', k_flag, a_value, 'EX', a_ttl)
return false
"""


class Mark(StrEnum):
    """What a job's cancel key holds: a person's request, or the job's own word that it is committing its result."""

    REQUESTED = "requested"
    COMMITTED = "committed"


@dataclass(frozen=True)
class Cancel:
    """A cancel request: who asked (the basic-auth user, ``cli`` or ``anonymous``) and when (epoch seconds)."""

    by: str
    at: float

    def to_dict(self) -> dict:
        return {"by": self.by, "at": round(self.at, 3)}


class RequestOutcome(StrEnum):
    NEW = "new"  # this call asked first
    REPEATED = "repeated"  # someone already asked; the first request stands
    TOO_LATE = "too_late"  # the job is committing its result (a promotion): nothing left to stop


@dataclass(frozen=True)
class CancelReply:
    outcome: RequestOutcome
    cancel: Cancel | None  # the request in force (None when too late)


def _parse(raw) -> tuple[Mark, Cancel | None] | None:
    value = text(raw)
    if value is None:
        return None
    data = json.loads(value)
    mark = Mark(data["mark"])
    return mark, Cancel(str(data.get("by", "")), float(data.get("at", 0.0))) if mark is Mark.REQUESTED else None


class CancelRegistry:
    def __init__(self, client: redis.Redis, namespace: str, ttl: int) -> None:
        self.redis = client
        self.keys = KeyMap(namespace)
        self.ttl = ttl
        self._set = Script(client, ("flag",), ("value", "ttl"), _SET_IF_ABSENT)

    def _set_if_absent(self, job_id: str, mark: Mark, **fields) -> tuple[Mark, Cancel | None] | None:
        value = json.dumps({"mark": mark.value, "at": time.time(), **fields})
        return _parse(self._set(flag=self.keys.job_cancel(job_id), value=value, ttl=self.ttl))

    def request(self, job_id: str, by: str) -> CancelReply:
        """Ask ``job_id`` to stop; idempotent (a second request keeps the first one's author)."""
        held = self._set_if_absent(job_id, Mark.REQUESTED, by=by)
        if held is None:
            return CancelReply(RequestOutcome.NEW, self.requested(job_id))
        mark, cancel = held
        if mark is Mark.COMMITTED:
            return CancelReply(RequestOutcome.TOO_LATE, None)
        return CancelReply(RequestOutcome.REPEATED, cancel)

    def requested(self, job_id: str) -> Cancel | None:
        """The cancel request for ``job_id``, if anyone asked (one GET: cheap enough to poll per chunk or step)."""
        held = _parse(self.redis.get(self.keys.job_cancel(job_id)))
        return held[1] if held else None

    def commit(self, job_id: str) -> Cancel | None:
        """The job is about to commit its result: from now on cancels are refused. Returns the cancel that came
        first, if one did (the job must then commit nothing)."""
        held = self._set_if_absent(job_id, Mark.COMMITTED)
        return held[1] if held else None
