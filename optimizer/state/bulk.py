"""Who is predicting which task, what is already in Label Studio, and how a bulk pre-annotation run is going.

Bulk runs are split into chunk jobs that any number of RQ workers run at once, so two of them may be handed the
same task (a re-run, a second request, a follow-up after a crash). A task is predicted only by the holder of its
**claim**, a Redis key with a lease: taken with ``SET NX``, renewed by the holder's heartbeat, deleted when the
holder is done, and left to expire when the holder is SIGKILLed. Label Studio stays the truth: after claiming, the
holder reads the task from Label Studio again and skips it if a prediction of the version is already there (the
window between posting and recording it here). The ``done`` set only saves that read for tasks known to be posted.

Counts per run (``bulk:run:<id>``) and per project (``metrics:bulk``) are plain ``HINCRBY``s, so chunk jobs in any
process add to them without coordination, and ``GET /jobs/<id>`` and ``/metrics`` read them. A run also keeps the
set of its chunk jobs that have not ended (``bulk:run:<id>:open``: the plan adds each one as it queues it, the chunk
removes itself after its last attempt), so its view asks RQ only about those, never about every chunk of a
10,000-task run; and the tasks that still failed after their chunk's last attempt, each with its reason
(``bulk:run:<id>:failed``).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import redis

from optimizer.state.keys import KeyMap, Script
from optimizer.state.replies import text

_CLAIM = """
local ids = cjson.decode(a_ids)
local claimed, done, busy = {}, {}, {}
for _, id in ipairs(ids) do
  if redis.call('SISMEMBER', k_done, id) == 1 then
    table.insert(done, id)
  elseif redis.call('SET', a_prefix .. id, a_holder, 'NX', 'PX', a_ttl_ms) then
    table.insert(claimed, id)
  elseif redis.call('GET', a_prefix .. id) == a_holder then
    redis.call('PEXPIRE', a_prefix .. id, a_ttl_ms)
    table.insert(claimed, id)
  else
    table.insert(busy, id)
  end
end
return cjson.encode({claimed, done, busy})
"""

_RENEW = """
local ids = cjson.decode(a_ids)
local held = {}
for _, id in ipairs(ids) do
  if redis.call('GET', a_prefix .. id) == a_holder then
    redis.call('PEXPIRE', a_prefix .. id, a_ttl_ms)
    table.insert(held, id)
  end
end
return cjson.encode(held)
"""

_FINISH = """
local posted = cjson.decode(a_posted)
for _, id in ipairs(posted) do redis.call('SADD', k_done, id) end
if #posted > 0 then redis.call('EXPIRE', k_done, a_done_ttl) end
local released = 0
for _, id in ipairs(cjson.decode(a_release)) do
  if redis.call('GET', a_prefix .. id) == a_holder then
    redis.call('DEL', a_prefix .. id)
    released = released + 1
  end
end
return released
"""


_CLOSE = """
if redis.call('SREM', k_open, a_chunk) == 1 then
  redis.call('HINCRBY', k_run, 'c:ended', 1)
  return 1
end
return 0
"""

# Failure reasons kept per run for GET /jobs/<id>; counts are kept for every task, the reasons for this many.
FAILURES_KEPT = 1000


def _ids(values: Iterable[int]) -> str:
    # An empty Lua table encodes as {} not []; the scripts only iterate, so either decodes to nothing.
    return json.dumps([str(v) for v in values])


@dataclass(frozen=True)
class Claims:
    claimed: list[int]  # ours now
    done: list[int]  # already posted by someone
    busy: list[int]  # held by another live job


class BulkLedger:
    def __init__(self, client: redis.Redis, namespace: str, done_ttl: int = 7 * 24 * 3600) -> None:
        self.redis = client
        self.keys = KeyMap(namespace)
        self.done_ttl = done_ttl
        self._claim = Script(client, ("done",), ("prefix", "holder", "ttl_ms", "ids"), _CLAIM)
        self._renew = Script(client, (), ("prefix", "holder", "ttl_ms", "ids"), _RENEW)
        self._finish = Script(client, ("done",), ("prefix", "holder", "posted", "done_ttl", "release"), _FINISH)
        self._close = Script(client, ("open", "run"), ("chunk",), _CLOSE)

    def _prefix(self, project: str, version: str) -> str:
        return self.keys.bulk_claim(project, version, "")

    # -- task claims --------------------------------------------------------------------------------------------
    def claim(self, project: str, version: str, tasks: Iterable[int], holder: str, ttl: float) -> Claims:
        reply = self._claim(
            done=self.keys.bulk_done(project, version),
            prefix=self._prefix(project, version),
            holder=holder,
            ttl_ms=int(ttl * 1000),
            ids=_ids(tasks),
        )
        parts = [[int(x) for x in (part or [])] for part in json.loads(reply)]
        return Claims(*parts)

    def renew(self, project: str, version: str, tasks: Iterable[int], holder: str, ttl: float) -> set[int]:
        """Extend the claims still ours; returns those (a claim that lapsed may belong to someone else now)."""
        reply = self._renew(
            prefix=self._prefix(project, version), holder=holder, ttl_ms=int(ttl * 1000), ids=_ids(tasks)
        )
        return {int(x) for x in (json.loads(reply) or [])}

    def finish(self, project: str, version: str, holder: str, done: Iterable[int], release: Iterable[int]) -> None:
        """Record ``done`` as posted and give up our claims on ``release`` (others may then retry a failed task)."""
        self._finish(
            done=self.keys.bulk_done(project, version),
            prefix=self._prefix(project, version),
            holder=holder,
            posted=_ids(done),
            done_ttl=self.done_ttl,
            release=_ids(release),
        )

    # -- runs ---------------------------------------------------------------------------------------------------
    def start_run(self, run_id: str, fields: Mapping[str, object], ttl: int) -> None:
        key = self.keys.bulk_run(run_id)
        pipe = self.redis.pipeline()
        pipe.hset(key, mapping={k: json.dumps(v) for k, v in fields.items()})
        pipe.expire(key, ttl)
        pipe.execute()

    def note_run(self, run_id: str, fields: Mapping[str, object]) -> None:
        """Update a run's fields as its plan learns them (the total after the first page; ``planned`` at the end)."""
        self.redis.hset(self.keys.bulk_run(run_id), mapping={k: json.dumps(v) for k, v in fields.items()})

    def open_chunk(self, run_id: str, chunk_id: str, ttl: int) -> None:
        """A chunk job is about to be queued: it counts as the run's until it closes itself."""
        pipe = self.redis.pipeline()
        pipe.sadd(self.keys.bulk_open(run_id), chunk_id)
        pipe.expire(self.keys.bulk_open(run_id), ttl)
        pipe.hincrby(self.keys.bulk_run(run_id), "c:queued", 1)
        pipe.execute()

    def close_chunk(self, run_id: str, chunk_id: str) -> bool:
        """The chunk's last attempt ended (its tasks are counted); idempotent. False if it was already closed."""
        return bool(self._close(open=self.keys.bulk_open(run_id), run=self.keys.bulk_run(run_id), chunk=chunk_id))

    def open_chunks(self, run_id: str) -> list[str]:
        return sorted(text(c) for c in self.redis.smembers(self.keys.bulk_open(run_id)))

    def fail_tasks(self, run_id: str, project: str, failures: Mapping[int, tuple[str, str]], ttl: int) -> None:
        """Record tasks that end without a prediction: ``task -> (reason, detail)``; counted as ``failed_<reason>``."""
        if not failures:
            return
        key = self.keys.bulk_failed(run_id)
        kept = self.redis.hlen(key)
        room = max(0, FAILURES_KEPT - kept)
        sample = dict(list(failures.items())[:room])
        if sample:
            pipe = self.redis.pipeline(transaction=False)
            rows = {str(t): json.dumps({"reason": r, "detail": d[:300]}) for t, (r, d) in sample.items()}
            pipe.hset(key, mapping=rows)
            pipe.expire(key, ttl)
            pipe.execute()
        self.count(run_id, project, Counter(f"failed_{reason}" for reason, _ in failures.values()))

    def failures(self, run_id: str, limit: int = 20) -> list[dict]:
        """Up to ``limit`` of the run's failed tasks with their reasons, lowest task id first."""
        raw = self.redis.hgetall(self.keys.bulk_failed(run_id))
        rows = sorted((int(text(t)), json.loads(text(v))) for t, v in raw.items())
        return [{"task": task, **why} for task, why in rows[:limit]]

    def count(self, run_id: str, project: str, outcomes: Mapping[str, int]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for outcome, amount in outcomes.items():
            if amount:
                pipe.hincrby(self.keys.bulk_run(run_id), f"n:{outcome}", amount)
                pipe.hincrby(self.keys.bulk_metrics(), f"{project}|{outcome}", amount)
        pipe.execute()

    def run(self, run_id: str) -> dict | None:
        raw = self.redis.hgetall(self.keys.bulk_run(run_id))
        if not raw:
            return None
        out: dict = {"tasks": {}, "chunks": {"queued": 0, "ended": 0}}
        for field, value in raw.items():
            if field.startswith("n:"):
                out["tasks"][field[2:]] = int(value)
            elif field.startswith("c:"):
                out["chunks"][field[2:]] = int(value)
            else:
                out[field] = json.loads(value)
        return out
