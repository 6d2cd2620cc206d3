"""A limit on LLM calls in flight across every process of the stack: a Redis semaphore whose slots are leases.

``LLM_CONCURRENCY`` bounds one process. With two web workers and N RQ workers that is 2+N times the bound, and a
one-at-a-time server (the embedded llama.cpp) queues every extra request: an annotator's single task then waits
behind a bulk job's backlog. ``LLM_GLOBAL_CONCURRENCY`` bounds them all together.

- **Slots are leases.** A slot is a member of a sorted set scored by its expiry (Redis ``TIME``, so the clocks of
  the machines do not matter). A holder that dies, SIGKILL included, frees its slot when the lease runs out; the
  lease is ``LLM_TIMEOUT`` plus a margin, the longest one call can legitimately take.
- **Interactive first.** An interactive caller that finds no free slot registers as waiting; while anyone waits,
  bulk callers do not take a freed slot, so the annotator's call is the next one to start. Waiting entries expire
  too, so a caller that gave up or died cannot block bulk work.
- **Polling, not notification.** A waiter retries every few milliseconds; the acquire is one round trip of a Lua
  script, which is cheap next to an LLM call (measured in ``bench/``).

If Redis is unreachable the limiter lets the call through and logs once: serving continues as in degraded mode,
with only the per-process bound.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid

import redis

from optimizer.serving.llm import Priority
from optimizer.state.keys import KeyMap, Script

log = logging.getLogger("optimizer.state.llmslots")

_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', k_slots, '-inf', now)
redis.call('ZREMRANGEBYSCORE', k_waiting, '-inf', now)
local interactive = a_priority == 'interactive'
local free = redis.call('ZCARD', k_slots) < tonumber(a_limit)
if free and (interactive or redis.call('ZCARD', k_waiting) == 0) then
  redis.call('ZADD', k_slots, now + tonumber(a_lease_ms), a_holder)
  redis.call('ZREM', k_waiting, a_holder)
  return 1
end
if interactive then
  redis.call('ZADD', k_waiting, now + tonumber(a_wait_ms), a_holder)
end
return 0
"""


class RedisSlots:
    """:class:`optimizer.serving.llm.SlotLimiter` over Redis: ``limit`` calls in flight across all processes."""

    def __init__(
        self,
        client: redis.Redis,
        namespace: str,
        limit: int,
        lease: float,
        *,
        poll: float = 0.005,
        max_wait: float = 3600.0,
    ) -> None:
        self.redis = client
        self.keys = KeyMap(namespace)
        self.limit = limit
        self.lease_ms = int(lease * 1000)
        self.poll = poll
        self.max_wait = max_wait
        self._script = Script(
            client, ("slots", "waiting"), ("priority", "limit", "lease_ms", "wait_ms", "holder"), _ACQUIRE
        )
        self._warned = False

    def acquire(self, priority: Priority, until: float | None) -> str | None:
        holder = uuid.uuid4().hex
        give_up = time.monotonic() + self.max_wait if until is None else until
        delay = self.poll
        while True:
            left = give_up - time.monotonic()
            if left <= 0:
                self._forget(holder)
                return None
            try:
                got = self._script(
                    slots=self.keys.llm_slots(),
                    waiting=self.keys.llm_waiting(),
                    priority=priority.value,
                    limit=self.limit,
                    lease_ms=self.lease_ms,
                    # A waiting mark outlives one poll by a margin, and never the caller's own deadline.
                    wait_ms=int(min(left, 1.0) * 1000),
                    holder=holder,
                )
            except redis.RedisError as exc:
                self._degraded(exc)
                return ""
            if got:
                return holder
            time.sleep(min(delay, left))
            delay = min(delay * 1.5, 0.05)  # back off a little under contention; stay responsive

    def release(self, token: str) -> None:
        if not token:
            return
        try:
            self.redis.zrem(self.keys.llm_slots(), token)
        except redis.RedisError as exc:  # the lease frees it anyway
            self._degraded(exc)

    def in_flight(self) -> int:
        """Slots held now (expired leases excluded), for /metrics and tests."""
        now_ms = int(time.time() * 1000)
        return int(self.redis.zcount(self.keys.llm_slots(), now_ms, "+inf"))

    def _forget(self, holder: str) -> None:
        with contextlib.suppress(redis.RedisError):  # the waiting mark expires within a second anyway
            self.redis.zrem(self.keys.llm_waiting(), holder)

    def _degraded(self, exc: Exception) -> None:
        if not self._warned:
            log.warning("LLM slot limiter cannot reach Redis (%s); only the per-process bound applies",
                        exc.__class__.__name__)  # fmt: skip
            self._warned = True
