"""The policy store: each project's current prompt policy, kept in Redis so every process sees the same truth.

Keys are in :mod:`optimizer.state.keys`: a policy body per version (written once), and per project the current
version, the promotion log, the pin and every policy's record.

Reading is one ``GET`` per request; bodies are cached in-process by version, which is safe because a version's body
never changes. When Redis is unreachable, the store keeps serving the last policy it saw for the project (or the
default) and says so in :meth:`health`; it retries Redis at most once per ``retry_interval`` so an outage does
not add a connect timeout to every request.

Promotion is a compare-and-set in one Lua script: it applies only if the project's current version is still the
parent the candidate was derived from, and the project is not pinned. A crash can therefore never leave a
half-promoted policy: either the script ran, or nothing changed.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from enum import StrEnum

import redis

from optimizer.serving.policy import Policy
from optimizer.state.keys import KeyMap, Script

_PROMOTE_KEYS = ("current", "pinned", "history", "body", "projects", "records")
_PROMOTE_ARGS = ("parent", "version", "policy", "entry", "force", "project", "record", "pin", "default_record")
_PROMOTE = """
if a_force ~= '1' and redis.call('EXISTS', k_pinned) == 1 then return 'pinned' end
local current = redis.call('GET', k_current)
if not current then current = '' end
if a_parent ~= '*' and current ~= a_parent then return 'stale' end
if a_pin ~= '' then redis.call('SET', k_pinned, a_pin) end
if current == a_version then return 'unchanged' end
redis.call('SET', k_body, a_policy, 'NX')
redis.call('HSETNX', k_records, a_version, a_record)
if current ~= '' then redis.call('HSETNX', k_records, current, a_default_record) end
redis.call('SET', k_current, a_version)
redis.call('RPUSH', k_history, a_entry)
redis.call('SADD', k_projects, a_project)
return 'ok'
"""


class PromoteStatus(StrEnum):
    """What the promotion script did; the values are what the Lua script returns."""

    OK = "ok"
    STALE = "stale"  # the live version is no longer the candidate's parent
    PINNED = "pinned"
    UNCHANGED = "unchanged"  # the candidate is already live


@dataclass(frozen=True)
class PromoteResult:
    status: PromoteStatus
    version: str

    @property
    def ok(self) -> bool:
        return self.status is PromoteStatus.OK


class StoreUnavailable(RuntimeError):
    """Raised by write operations when Redis cannot be reached; reads degrade instead."""


class PolicyStore:
    def __init__(
        self,
        client: redis.Redis,
        default: Policy,
        namespace: str = "lsml",
        retry_interval: float = 1.0,
        cache_size: int = 512,
        health_fresh: float = 0.1,
    ) -> None:
        self.redis = client
        self.default = default
        self.retry_interval = retry_interval
        self.health_fresh = health_fresh
        self._last_ok = 0.0
        self._bodies: OrderedDict[str, Policy] = OrderedDict({default.version: default})
        self._cache_size = cache_size
        self._last: dict[str, Policy] = {}
        # When the read behind each _last entry started: a slow read that began before a newer one finished must
        # not replace the newer policy it never saw (else an outage right after serves the older version).
        self._last_read: dict[str, float] = {}
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._retry_at = 0.0
        self._last_error = ""
        self.keys = KeyMap(namespace)
        self._promote = Script(self.redis, _PROMOTE_KEYS, _PROMOTE_ARGS, _PROMOTE)

    # -- health -------------------------------------------------------------------------------------------------
    def _available(self) -> bool:
        return self._down_since is None or time.monotonic() >= self._retry_at

    def _failed(self, exc: Exception) -> None:
        now = time.monotonic()
        with self._lock:
            if self._down_since is None:
                self._down_since = now
            self._retry_at = now + self.retry_interval
            self._last_error = f"{exc.__class__.__name__}: {str(exc)[:200]}"

    def _recovered(self) -> None:
        self._last_ok = time.monotonic()
        if self._down_since is not None:
            with self._lock:
                self._down_since = None
                self._last_error = ""

    def health(self) -> dict:
        """Cheap: pings Redis only when it is believed up or its retry time has come, and no Redis call succeeded in
        the last ``health_fresh`` seconds (that success already proves it answers).

        Skipping the ping under load cut /health's p99 by about a third in bench P2; the price is a report up to
        ``health_fresh`` (0.1 s) old when Redis dies between two probes and no request has noticed yet.
        """
        if self._available() and time.monotonic() - self._last_ok >= self.health_fresh:
            try:
                self.redis.ping()
                self._recovered()
            except redis.RedisError as exc:
                self._failed(exc)
        if self._down_since is None:
            return {"redis": "ok"}
        return {
            "redis": "unreachable",
            "down_for_s": round(time.monotonic() - self._down_since, 1),
            "error": self._last_error,
            "serving": "last known policy per project (read-only)",
        }

    @property
    def degraded(self) -> bool:
        return self._down_since is not None

    # -- bodies -------------------------------------------------------------------------------------------------
    def _remember(self, policy: Policy) -> Policy:
        with self._lock:
            self._bodies[policy.version] = policy
            self._bodies.move_to_end(policy.version)
            while len(self._bodies) > self._cache_size:
                self._bodies.popitem(last=False)
        return policy

    def get(self, version: str) -> Policy | None:
        """A policy body by version: from the process cache, else Redis."""
        cached = self._bodies.get(version)
        if cached is not None:
            return cached
        raw = self.redis.get(self.keys.policy(version))
        if raw is None:
            return None
        return self._remember(Policy.from_json(raw))

    def put(self, policy: Policy) -> str:
        """Store a body (idempotent: the first writer of a version wins, and all writers wrote the same text)."""
        self.redis.set(self.keys.policy(policy.version), policy.to_json(), nx=True)
        self._remember(policy)
        return policy.version

    # -- current ------------------------------------------------------------------------------------------------
    def current(self, project: str) -> Policy:
        """The project's live policy. Never raises for Redis faults: degrades to the last known policy."""
        if self._available():
            started = time.monotonic()
            try:
                policy = self._read_current(project)
                self._recovered()
                with self._lock:
                    if started >= self._last_read.get(project, float("-inf")):
                        self._last[project], self._last_read[project] = policy, started
                return policy
            except redis.RedisError as exc:
                self._failed(exc)
        return self._last.get(project, self.default)

    def _read_current(self, project: str) -> Policy:
        current_key = self.keys.current(project)
        version = self.redis.get(current_key)
        if version is None:
            # First sight of the project: register the default as its starting policy, unless another
            # process raced us to it, in which case theirs wins (same default, same version).
            pipe = self.redis.pipeline(transaction=True)
            pipe.set(self.keys.policy(self.default.version), self.default.to_json(), nx=True)
            pipe.set(current_key, self.default.version, nx=True)
            pipe.hsetnx(
                self.keys.policies(project), self.default.version, json.dumps({"source": "default", "at": time.time()})
            )
            pipe.sadd(self.keys.projects(), project)
            pipe.get(current_key)
            version = pipe.execute()[-1]
        version = version.decode() if isinstance(version, bytes) else version
        policy = self.get(version)
        if policy is None:
            # A current pointer without a body would be a corrupted store; serve the default rather than fail.
            return self.default
        return policy

    def current_version(self, project: str) -> str:
        return self.current(project).version

    # -- promotion ----------------------------------------------------------------------------------------------
    def promote(
        self,
        project: str,
        policy: Policy,
        parent: str | None,
        *,
        force: bool = False,
        pin: dict | None = None,
        **event,
    ) -> PromoteResult:
        """Make ``policy`` current iff the current version is still ``parent`` (``None``: any) and not pinned.

        ``force`` bypasses the pin (a person's rollback, not an automatic promotion). ``pin`` pins the project in
        the same script, so "roll back to v and freeze it" cannot half-happen. ``event`` (job id, source, scores)
        goes into the promotion log and, the first time a version is seen, into its history record.
        """
        now = time.time()
        entry = {"version": policy.version, "parent": parent, "at": now, **event}
        record = {**policy.meta, "version": policy.version, "parent": parent, "at": now, **event}
        try:
            status = self._promote(
                current=self.keys.current(project),
                pinned=self.keys.pinned(project),
                history=self.keys.history(project),
                body=self.keys.policy(policy.version),
                projects=self.keys.projects(),
                records=self.keys.policies(project),
                parent=parent if parent is not None else "*",
                version=policy.version,
                policy=policy.to_json(),
                entry=json.dumps(entry, sort_keys=True),
                force="1" if force else "0",
                project=project,
                record=json.dumps(record, sort_keys=True, default=str),
                pin=json.dumps(pin, sort_keys=True) if pin else "",
                default_record=json.dumps({"source": "default", "at": now}),
            )
        except redis.RedisError as exc:
            raise StoreUnavailable(f"cannot promote: Redis unavailable ({exc.__class__.__name__})") from exc
        status = PromoteStatus(status.decode() if isinstance(status, bytes) else status)
        if status is PromoteStatus.OK:
            self._remember(policy)
        return PromoteResult(status, policy.version)

    def record(self, project: str, policy: Policy, **info) -> None:
        """Keep a policy the project was offered but that did not go live (rejected, pinned, stale), for history."""
        record = {**policy.meta, "version": policy.version, "at": time.time(), **info}
        pipe = self.redis.pipeline(transaction=True)
        pipe.set(self.keys.policy(policy.version), policy.to_json(), nx=True)
        pipe.hsetnx(self.keys.policies(project), policy.version, json.dumps(record, sort_keys=True, default=str))
        pipe.execute()
        self._remember(policy)
