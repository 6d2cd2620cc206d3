"""Policy history and the operations people run on it: list, show, diff, publish, roll back, pin, unpin.

Every policy a project has served or been offered is kept (text, demos, scores, parent, job id, time): bodies are
immutable and keyed by content hash, and each project keeps one record per version plus a log of promotions (see
``store.py``). Nothing here is an automatic promotion: a rollback is a person choosing a version, so it bypasses
the pin, but it is still a compare-and-set on the version the person saw, so two people rolling back at once
cannot silently overwrite each other (the second gets a conflict and can look again).
"""

from __future__ import annotations

import difflib
import json
import time
from dataclasses import dataclass

from optimizer.serving.policy import Demo, Policy
from optimizer.state.replies import text
from optimizer.state.store import PolicyStore, PromoteResult, PromoteStatus


class HistoryError(ValueError):
    """A request about history that cannot be served. Callers (HTTP API, CLI) map the subclasses to their answers.

    ``field`` names the argument the caller should look at again.
    """

    field = "version"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UnknownPolicy(HistoryError):
    """The project has no such version (or its body is gone)."""


class StaleLive(HistoryError):
    """The live version is no longer the one the caller saw: a compare-and-set lost a race."""

    field = "expected"


@dataclass(frozen=True)
class Entry:
    version: str
    record: dict
    live: bool
    promotions: tuple[float, ...]

    def to_dict(self) -> dict:
        record = {k: v for k, v in self.record.items() if k != "version"}
        return {
            "version": self.version,
            "live": self.live,
            "promoted_at": list(self.promotions),
            **record,
        }


class PolicyHistory:
    def __init__(self, store: PolicyStore) -> None:
        self.store = store
        self.redis = store.redis

    # -- reading ------------------------------------------------------------------------------------------------
    def pinned(self, project: str) -> dict | None:
        raw = self.redis.get(self.store.keys.pinned(project))
        if raw is None:
            return None
        try:
            value = json.loads(raw)
        except (TypeError, ValueError):
            value = {}
        return value if isinstance(value, dict) else {}

    def promotions(self, project: str) -> list[dict]:
        """The promotion log, oldest first: every time the live version changed, and why."""
        raw = self.redis.lrange(self.store.keys.history(project), 0, -1)
        return [json.loads(r) for r in raw]

    def entries(self, project: str) -> list[Entry]:
        """Every version the project has had or been offered, newest first; the live one is marked."""
        current = self.store.current_version(project)
        records = {text(k): json.loads(v) for k, v in self.redis.hgetall(self.store.keys.policies(project)).items()}
        promoted: dict[str, list[float]] = {}
        for event in self.promotions(project):
            promoted.setdefault(event["version"], []).append(event.get("at", 0.0))
        if current not in records:
            # The starting policy is never promoted, so it has no record: describe it.
            records[current] = {"source": "default", "at": min([0.0, *[r.get("at", 0) for r in records.values()]])}
        entries = [
            Entry(version, record, version == current, tuple(promoted.get(version, ())))
            for version, record in records.items()
        ]
        entries.sort(key=lambda e: (max((e.record.get("at", 0.0), *e.promotions)), e.version), reverse=True)
        return entries

    def versions(self, project: str) -> list[str]:
        return [e.version for e in self.entries(project)]

    def policy(self, project: str, version: str) -> Policy:
        """A version's body, if this project has had or been offered it (404 otherwise)."""
        if not self.known(project, version):
            raise UnknownPolicy(f"project {project} has no policy version {version!r}")
        policy = self.store.get(version)
        if policy is None:
            raise UnknownPolicy(f"policy {version!r} is recorded but its body is missing")
        return policy

    def known(self, project: str, version: str) -> bool:
        if self.redis.hexists(self.store.keys.policies(project), version):
            return True
        return version == self.store.current_version(project)

    def show(self, project: str, version: str) -> dict:
        policy = self.policy(project, version)
        entry = next((e for e in self.entries(project) if e.version == version), None)
        return {**(entry.to_dict() if entry else {"version": version}), "policy": policy.to_dict()}

    def diff(self, project: str, old: str | None = None, new: str | None = None) -> dict:
        """``old`` → ``new``; by default the live version against the version it was derived from."""
        new = new or self.store.current_version(project)
        old = old or self.show(project, new).get("parent") or new
        a, b = self.policy(project, old), self.policy(project, new)
        return {"from": old, "to": new, **diff_policies(a, b)}

    # -- changing -----------------------------------------------------------------------------------------------
    def rollback(self, project: str, version: str, *, expected: str | None = None, pin: bool = False) -> dict:
        """Make an earlier (or any recorded) version live again, as a compare-and-set on the live version.

        ``expected``: the live version the caller saw; omitted, the version read just now. A change in between is a
        409, never a silent overwrite. With ``pin`` the project is pinned in the same atomic step.
        """
        policy = self.policy(project, version)
        parent = expected or self.store.current_version(project)
        result = self.store.promote(
            project,
            policy,
            parent,
            force=True,
            pin={"at": time.time(), "version": version} if pin else None,
            source="rollback",
        )
        return self._outcome(project, result, parent)

    def publish(self, project: str, policy: Policy, *, source: str, live: bool, expected: str | None = None) -> dict:
        """Add a policy a person wrote (``source`` ``manual`` or ``cli``) to the history, live if asked.

        Going live is a person's decision like a rollback, so it bypasses the pin, and it is the same compare-and-set
        on the live version the person saw (``expected``; omitted: the version read just now): a change in between
        is a 409. Not live, it is kept in history beside the optimiser's candidates, to roll back to later.
        """
        parent = expected or self.store.current_version(project)
        if live:
            result = self.store.promote(project, policy, parent, force=True, source=source)
            return {**self._outcome(project, result, parent), "version": policy.version, "source": source}
        self.store.record(project, policy, parent=parent, status="published", source=source)
        return {"status": "published", "version": policy.version, "live": self.store.current_version(project),
                "source": source, "pinned": self.pinned(project) is not None}  # fmt: skip

    def pin(self, project: str, version: str | None = None) -> dict:
        """Freeze the project: no automatic promotion until unpinned. With ``version``: roll back to it first."""
        if version is not None and version != self.store.current_version(project):
            return self.rollback(project, version, pin=True)
        current = self.store.current_version(project)
        self.redis.set(self.store.keys.pinned(project), json.dumps({"at": time.time(), "version": current}))
        return {"status": "pinned", "live": current, "pinned": True}

    def unpin(self, project: str) -> dict:
        removed = self.redis.delete(self.store.keys.pinned(project))
        return {"status": "unpinned" if removed else "not pinned", "live": self.store.current_version(project)}

    def _outcome(self, project: str, result: PromoteResult, parent: str) -> dict:
        if result.status is PromoteStatus.STALE:
            raise StaleLive(f"the live version changed (expected {parent}); list the policies again and retry")
        return {"status": result.status, "live": result.version, "pinned": self.pinned(project) is not None}


def diff_policies(a: Policy, b: Policy) -> dict:
    """A unified diff of the instructions plus the demos added and removed (demos compare by input and answer)."""
    lines = difflib.unified_diff(
        a.instruction.splitlines(),
        b.instruction.splitlines(),
        fromfile=a.version,
        tofile=b.version,
        lineterm="",
    )
    old, new = _demo_keys(a.demos), _demo_keys(b.demos)
    return {
        "instruction_diff": "".join(line + "\n" for line in lines),
        "demos_added": [d.to_dict() for key, d in new.items() if key not in old],
        "demos_removed": [d.to_dict() for key, d in old.items() if key not in new],
        "demo_k": {"from": a.demo_k, "to": b.demo_k},
        "narrow_k": {"from": a.narrow_k, "to": b.narrow_k},
        "same": a.version == b.version,
    }


def _demo_keys(demos: tuple[Demo, ...]) -> dict[str, Demo]:
    return {json.dumps(d.to_dict(), sort_keys=True, ensure_ascii=False): d for d in demos}
