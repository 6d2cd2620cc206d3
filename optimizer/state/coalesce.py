"""One training run per project at a time, with every trigger coalesced into at most one follow-up run.

Label Studio fires training triggers in bursts (50 annotators saving, "Start training" clicked twice), but a run
reads *all* of the project's annotations, so one run after the burst serves every trigger in it. The state that
decides this lives in Redis and changes only inside Lua scripts, so every web worker and RQ worker sees the same
decision and two triggers can never both start a run.

Per project (``ns`` is ``REDIS_NAMESPACE``):
- ``ns:train:<p>`` hash: ``queued`` (the id of the run waiting in the RQ queue, with ``queued_at``) and
  ``followup`` (the id of the run that will be queued when the current one ends);
- ``ns:train:<p>:lease``: the id of the running job, with a TTL its heartbeat renews. A SIGKILLed worker stops
  renewing, the lease expires, and the project is free again: no crash blocks a project forever;
- ``ns:train:<p>:count``: annotations since the last run (for ``RETRAIN_EVERY_N``);
- ``ns:train:job:<id>``: the project a job id belongs to, so a reserved but not yet queued id can be looked up.

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

import redis

_TRIGGER = """
redis.call('SADD', KEYS[4], ARGV[1])
local threshold = tonumber(ARGV[4])
if threshold > 0 then
  local n = redis.call('INCR', KEYS[3])
  if n < threshold then return {'counted', '', tostring(n)} end
end
redis.call('SET', KEYS[3], '0')
if ARGV[5] ~= '' and redis.call('HGET', KEYS[1], 'queued') == ARGV[5] then
  redis.call('HDEL', KEYS[1], 'queued', 'queued_at')
end
local queued = redis.call('HGET', KEYS[1], 'queued')
if queued then return {'coalesced', queued, 'queued'} end
if redis.call('EXISTS', KEYS[2]) == 1 then
  local f = redis.call('HGET', KEYS[1], 'followup')
  if f then return {'coalesced', f, 'followup'} end
  redis.call('HSET', KEYS[1], 'followup', ARGV[2])
  redis.call('SET', KEYS[5], ARGV[1], 'EX', ARGV[6])
  return {'followup', ARGV[2], ''}
end
local id = redis.call('HGET', KEYS[1], 'followup')
if id then
  redis.call('HDEL', KEYS[1], 'followup')
else
  id = ARGV[2]
  redis.call('SET', KEYS[5], ARGV[1], 'EX', ARGV[6])
end
redis.call('HSET', KEYS[1], 'queued', id, 'queued_at', ARGV[3])
return {'queued', id, ''}
"""

_BEGIN = """
local holder = redis.call('GET', KEYS[2])
if redis.call('HGET', KEYS[1], 'queued') == ARGV[1] then redis.call('HDEL', KEYS[1], 'queued', 'queued_at') end
if holder and holder ~= ARGV[1] then
  local f = redis.call('HGET', KEYS[1], 'followup')
  if not f then
    f = ARGV[3]
    redis.call('HSET', KEYS[1], 'followup', f)
    redis.call('SET', KEYS[4], ARGV[4], 'EX', ARGV[5])
  end
  return {'busy', f}
end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
redis.call('SET', KEYS[3], '0')
return {'ok', ''}
"""

_HEARTBEAT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

# Release the lease (when ARGV[1] holds it) and hand the project to its follow-up, if any. With ARGV[1] == ''
# it is the crash sweep: a follow-up whose runner died (lease expired) is queued.
_FINISH = """
local holder = redis.call('GET', KEYS[2])
if holder then
  if holder ~= ARGV[1] then return false end
  redis.call('DEL', KEYS[2])
end
if redis.call('HEXISTS', KEYS[1], 'queued') == 1 then return false end
local f = redis.call('HGET', KEYS[1], 'followup')
if not f then return false end
redis.call('HDEL', KEYS[1], 'followup')
redis.call('HSET', KEYS[1], 'queued', f, 'queued_at', ARGV[2])
return f
"""


@dataclass(frozen=True)
class Trigger:
    status: str  # counted | queued | followup | coalesced
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
        self.ns = namespace
        self.job_record_ttl = job_record_ttl
        self._trigger = client.register_script(_TRIGGER)
        self._begin = client.register_script(_BEGIN)
        self._heartbeat = client.register_script(_HEARTBEAT)
        self._finish = client.register_script(_FINISH)

    # -- keys ---------------------------------------------------------------------------------------------------
    def state_key(self, project: str) -> str:
        return f"{self.ns}:train:{project}"

    def lease_key(self, project: str) -> str:
        return f"{self.ns}:train:{project}:lease"

    def count_key(self, project: str) -> str:
        return f"{self.ns}:train:{project}:count"

    def job_key(self, job_id: str) -> str:
        return f"{self.ns}:train:job:{job_id}"

    @property
    def projects_key(self) -> str:
        return f"{self.ns}:train:projects"

    # -- web side -----------------------------------------------------------------------------------------------
    def queued(self, project: str) -> tuple[str | None, float]:
        """The queued run's id and when it was queued (for the caller's check that it still exists in RQ)."""
        job_id, at = self.redis.hmget(self.state_key(project), "queued", "queued_at")
        return _text(job_id), float(_text(at) or 0.0)

    def trigger(self, project: str, *, threshold: int = 0, stale: str | None = None) -> Trigger:
        """Register one trigger. ``threshold`` > 0 counts it toward ``RETRAIN_EVERY_N`` first.

        ``stale``: a queued id the caller found dead in RQ (its worker died before it began); it is replaced.
        """
        new_id = new_job_id()
        status, job_id, detail = self._trigger(
            keys=[
                self.state_key(project),
                self.lease_key(project),
                self.count_key(project),
                self.projects_key,
                self.job_key(new_id),
            ],
            args=[project, new_id, f"{time.time():.3f}", threshold, stale or "", self.job_record_ttl],
        )
        return Trigger(_text(status), _text(job_id) or None, _text(detail))

    def project_of(self, job_id: str) -> str | None:
        return _text(self.redis.get(self.job_key(job_id)))

    def status(self, project: str) -> dict:
        state = self.redis.hgetall(self.state_key(project))
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(self.lease_key(project))
        pipe.pttl(self.lease_key(project))
        pipe.get(self.count_key(project))
        running, ttl_ms, count = pipe.execute()
        return {
            "running": _text(running),
            "lease_ttl_s": round(ttl_ms / 1000, 1) if ttl_ms and ttl_ms > 0 else None,
            "queued": _text(state.get("queued") or state.get(b"queued")),
            "followup": _text(state.get("followup") or state.get(b"followup")),
            "annotations_since_last_run": int(_text(count) or 0),
        }

    # -- worker side --------------------------------------------------------------------------------------------
    def begin(self, project: str, job_id: str, lease_ttl: float) -> Begin:
        """Take the project's lease for ``job_id``; if another run holds it, this trigger becomes its follow-up."""
        spare = new_job_id()
        status, followup = self._begin(
            keys=[self.state_key(project), self.lease_key(project), self.count_key(project), self.job_key(spare)],
            args=[job_id, int(lease_ttl * 1000), spare, project, self.job_record_ttl],
        )
        if _text(status) == "ok":
            return Begin(True)
        return Begin(False, _text(followup))

    def heartbeat(self, project: str, job_id: str, lease_ttl: float) -> bool:
        """Renew the lease; False when it was lost (expired and maybe taken by another run)."""
        return bool(self._heartbeat(keys=[self.lease_key(project)], args=[job_id, int(lease_ttl * 1000)]))

    def finish(self, project: str, job_id: str) -> str | None:
        """Release the lease; returns the follow-up id the caller must now enqueue, if any."""
        return self._handover(project, job_id)

    def orphans(self) -> list[tuple[str, str]]:
        """Follow-ups whose runner died (lease expired): moved to queued; returns (project, id) to enqueue."""
        out = []
        for project in sorted(_text(p) for p in self.redis.smembers(self.projects_key)):
            job_id = self._handover(project, "")
            if job_id:
                out.append((project, job_id))
        return out

    def _handover(self, project: str, job_id: str) -> str | None:
        result = self._finish(
            keys=[self.state_key(project), self.lease_key(project)], args=[job_id, f"{time.time():.3f}"]
        )
        return _text(result) if result else None


def _text(value) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)
