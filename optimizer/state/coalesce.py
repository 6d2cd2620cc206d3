"""One training run per project at a time, with every trigger coalesced into at most one follow-up run.

Label Studio fires training triggers in bursts (50 annotators saving, "Start training" clicked twice), but a run
reads *all* of the project's annotations, so one run after the burst serves every trigger in it. The state that
decides this lives in Redis and changes only inside Lua scripts, so every web worker and RQ worker sees the same
decision and two triggers can never both start a run.

Per project (keys named in :mod:`optimizer.state.keys`):
- ``train_state`` hash: ``queued`` (the id of the run waiting in the RQ queue, with ``queued_at``) and
  ``followup`` (the id of the run that will be queued when the current one ends);
- ``train_lease``: the id of the running job, with a TTL its heartbeat renews. A SIGKILLed worker stops
  renewing, the lease expires, and the project is free again: no crash blocks a project forever;
- ``train_count``: annotations since the last run (for ``RETRAIN_EVERY_N``);
- ``train_job``: the project a job id belongs to, so a reserved but not yet queued id can be looked up.

A trigger (``trigger``) answers with one of:
- ``counted``: below the annotation threshold, nothing queued;
- ``queued``: a new run is reserved; the caller must put it in the RQ queue;
- ``followup``: a run is in progress; this id runs once it ends;
- ``coalesced``: the trigger joined the queued run or the existing follow-up (same id returned).

The queue itself is RQ's; this module only decides which ids go into it, so it has no RQ dependency.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from enum import StrEnum

import redis

from optimizer.state.keys import KeyMap, Script
from optimizer.state.replies import text

_TRIGGER_KEYS = ("state", "lease", "count", "projects", "new_job")
_TRIGGER_ARGS = ("project", "new_id", "now", "threshold", "stale", "ttl")
_TRIGGER = """
redis.call('SADD', k_projects, a_project)
local threshold = tonumber(a_threshold)
if threshold > 0 then
  local n = redis.call('INCR', k_count)
  if n < threshold then return {'counted', '', tostring(n)} end
end
redis.call('SET', k_count, '0')
if a_stale ~= '' and redis.call('HGET', k_state, 'queued') == a_stale then
  redis.call('HDEL', k_state, 'queued', 'queued_at')
end
local queued = redis.call('HGET', k_state, 'queued')
if queued then return {'coalesced', queued, 'queued'} end
if redis.call('EXISTS', k_lease) == 1 then
  local f = redis.call('HGET', k_state, 'followup')
  if f then return {'coalesced', f, 'followup'} end
  redis.call('HSET', k_state, 'followup', a_new_id)
  redis.call('SET', k_new_job, a_project, 'EX', a_ttl)
  return {'followup', a_new_id, ''}
end
local id = redis.call('HGET', k_state, 'followup')
if id then
  redis.call('HDEL', k_state, 'followup')
else
  id = a_new_id
  redis.call('SET', k_new_job, a_project, 'EX', a_ttl)
end
redis.call('HSET', k_state, 'queued', id, 'queued_at', a_now)
return {'queued', id, ''}
"""

_BEGIN_KEYS = ("state", "lease", "count", "spare_job")
_BEGIN_ARGS = ("job_id", "lease_ms", "spare_id", "project", "ttl")
_BEGIN = """
local holder = redis.call('GET', k_lease)
if redis.call('HGET', k_state, 'queued') == a_job_id then redis.call('HDEL', k_state, 'queued', 'queued_at') end
if holder and holder ~= a_job_id then
  local f = redis.call('HGET', k_state, 'followup')
  if not f then
    f = a_spare_id
    redis.call('HSET', k_state, 'followup', f)
    redis.call('SET', k_spare_job, a_project, 'EX', a_ttl)
  end
  return {'busy', f}
end
redis.call('SET', k_lease, a_job_id, 'PX', a_lease_ms)
redis.call('SET', k_count, '0')
return {'ok', ''}
"""

_HEARTBEAT_KEYS = ("lease",)
_HEARTBEAT_ARGS = ("job_id", "lease_ms")
_HEARTBEAT = """
if redis.call('GET', k_lease) == a_job_id then
  redis.call('PEXPIRE', k_lease, a_lease_ms)
  return 1
end
return 0
"""

# Release the lease (when job_id holds it) and hand the project to its follow-up, if any. With job_id == '' it is
# the crash sweep: a follow-up whose runner died (lease expired) is queued.
_FINISH_KEYS = ("state", "lease")
_FINISH_ARGS = ("job_id", "now")
_FINISH = """
local holder = redis.call('GET', k_lease)
if holder then
  if holder ~= a_job_id then return false end
  redis.call('DEL', k_lease)
end
if redis.call('HEXISTS', k_state, 'queued') == 1 then return false end
local f = redis.call('HGET', k_state, 'followup')
if not f then return false end
redis.call('HDEL', k_state, 'followup')
redis.call('HSET', k_state, 'queued', f, 'queued_at', a_now)
return f
"""


class TriggerStatus(StrEnum):
    """What one trigger did (see the module docstring); the values are what the Lua script returns."""

    COUNTED = "counted"
    QUEUED = "queued"
    FOLLOWUP = "followup"
    COALESCED = "coalesced"


@dataclass(frozen=True)
class Trigger:
    status: TriggerStatus
    job_id: str | None
    detail: str = ""

    @property
    def job(self) -> str | None:
        """The id to report to Label Studio: every outcome but ``counted`` names the run that will serve it."""
        return self.job_id or None


@dataclass(frozen=True)
class Begin:
    ok: bool
    followup: str | None = None  # when not ok: the run that will serve this job's trigger instead


def new_job_id() -> str:
    return "train-" + uuid.uuid4().hex[:16]


class Coalescer:
    def __init__(self, client: redis.Redis, namespace: str, job_record_ttl: int = 30 * 86400) -> None:
        self.redis = client
        self.keys = KeyMap(namespace)
        self.job_record_ttl = job_record_ttl
        self._trigger = Script(client, _TRIGGER_KEYS, _TRIGGER_ARGS, _TRIGGER)
        self._begin = Script(client, _BEGIN_KEYS, _BEGIN_ARGS, _BEGIN)
        self._heartbeat = Script(client, _HEARTBEAT_KEYS, _HEARTBEAT_ARGS, _HEARTBEAT)
        self._finish = Script(client, _FINISH_KEYS, _FINISH_ARGS, _FINISH)

    # -- web side -----------------------------------------------------------------------------------------------
    def queued(self, project: str) -> tuple[str | None, float]:
        """The queued run's id and when it was queued (for the caller's check that it still exists in RQ)."""
        job_id, at = self.redis.hmget(self.keys.train_state(project), "queued", "queued_at")
        return text(job_id), float(text(at) or 0.0)

    def trigger(self, project: str, *, threshold: int = 0, stale: str | None = None) -> Trigger:
        """Register one trigger. ``threshold`` > 0 counts it toward ``RETRAIN_EVERY_N`` first.

        ``stale``: a queued id the caller found dead in RQ (its worker died before it began); it is replaced.
        """
        new_id = new_job_id()
        status, job_id, detail = self._trigger(
            state=self.keys.train_state(project),
            lease=self.keys.train_lease(project),
            count=self.keys.train_count(project),
            projects=self.keys.train_projects(),
            new_job=self.keys.train_job(new_id),
            project=project,
            new_id=new_id,
            now=f"{time.time():.3f}",
            threshold=threshold,
            stale=stale or "",
            ttl=self.job_record_ttl,
        )
        return Trigger(TriggerStatus(text(status)), text(job_id) or None, text(detail))

    def project_of(self, job_id: str) -> str | None:
        return text(self.redis.get(self.keys.train_job(job_id)))

    def status(self, project: str) -> dict:
        state = self.redis.hgetall(self.keys.train_state(project))
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(self.keys.train_lease(project))
        pipe.pttl(self.keys.train_lease(project))
        pipe.get(self.keys.train_count(project))
        running, ttl_ms, count = pipe.execute()
        return {
            "running": text(running),
            "lease_ttl_s": round(ttl_ms / 1000, 1) if ttl_ms and ttl_ms > 0 else None,
            "queued": text(state.get("queued") or state.get(b"queued")),
            "followup": text(state.get("followup") or state.get(b"followup")),
            "annotations_since_last_run": int(text(count) or 0),
        }

    # -- worker side --------------------------------------------------------------------------------------------
    def begin(self, project: str, job_id: str, lease_ttl: float) -> Begin:
        """Take the project's lease for ``job_id``; if another run holds it, this trigger becomes its follow-up."""
        spare = new_job_id()
        status, followup = self._begin(
            state=self.keys.train_state(project),
            lease=self.keys.train_lease(project),
            count=self.keys.train_count(project),
            spare_job=self.keys.train_job(spare),
            job_id=job_id,
            lease_ms=int(lease_ttl * 1000),
            spare_id=spare,
            project=project,
            ttl=self.job_record_ttl,
        )
        if text(status) == "ok":
            return Begin(True)
        return Begin(False, text(followup))

    def heartbeat(self, project: str, job_id: str, lease_ttl: float) -> bool:
        """Renew the lease; False when it was lost (expired and maybe taken by another run)."""
        return bool(
            self._heartbeat(lease=self.keys.train_lease(project), job_id=job_id, lease_ms=int(lease_ttl * 1000))
        )

    def finish(self, project: str, job_id: str) -> str | None:
        """Release the lease; returns the follow-up id the caller must now enqueue, if any."""
        return self._handover(project, job_id)

    def orphans(self) -> list[tuple[str, str]]:
        """Follow-ups whose runner died (lease expired): moved to queued; returns (project, id) to enqueue."""
        out = []
        for project in sorted(text(p) for p in self.redis.smembers(self.keys.train_projects())):
            job_id = self._handover(project, "")
            if job_id:
                out.append((project, job_id))
        return out

    def _handover(self, project: str, job_id: str) -> str | None:
        result = self._finish(
            state=self.keys.train_state(project),
            lease=self.keys.train_lease(project),
            job_id=job_id,
            now=f"{time.time():.3f}",
        )
        return text(result) if result else None
