"""LLM spend per project, per UTC day and per (role, profile), counted in Redis by every process that calls an LLM.

Web workers, RQ jobs and their forked children all write here (``HINCRBY``, one pipelined round trip per answered
call), so the dashboard, ``/metrics`` and the daily limit see the same figure whichever process spent it. The cost
is priced when the call is answered, with the price in force then, and kept in billionths of the currency unit so
the sums stay exact integers. Calls of a model with no known price add tokens but no cost, and are counted as
``unpriced_calls`` so a page can say so.

One hash per project and day (``ns:spend:<p>:<YYYY-MM-DD>``, UTC), fields ``<role>|<profile>|<counter>``; profile
names cannot hold ``|`` (``LLM_PROFILES`` names are ``[A-Za-z0-9_.-]``). Days expire after :data:`DAYS_KEPT`.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import redis

from optimizer.state.keys import KeyMap
from optimizer.state.replies import text

NANO = 1_000_000_000
DAYS_KEPT = 400
COUNTERS = ("calls", "prompt_tokens", "completion_tokens", "cost_nano", "unpriced_calls")


def utc_day(at: float | None = None) -> str:
    return datetime.fromtimestamp(time.time() if at is None else at, UTC).strftime("%Y-%m-%d")


@dataclass(frozen=True)
class SpendRow:
    role: str
    profile: str
    calls: int
    prompt_tokens: int
    completion_tokens: int
    cost: float
    unpriced_calls: int

    def to_dict(self) -> dict:
        return {**self.__dict__, "cost": round(self.cost, 9)}


class SpendLedger:
    def __init__(self, client: redis.Redis, namespace: str) -> None:
        self.redis = client
        self.keys = KeyMap(namespace)

    def record(
        self, project: str, role: str, profile: str, prompt: int, completion: int, cost: float, *, priced: bool = True
    ) -> None:
        key = self.keys.spend(project, utc_day())
        prefix = f"{role}|{profile}|"
        pipe = self.redis.pipeline(transaction=False)
        pipe.hincrby(key, prefix + "calls", 1)
        if prompt:
            pipe.hincrby(key, prefix + "prompt_tokens", prompt)
        if completion:
            pipe.hincrby(key, prefix + "completion_tokens", completion)
        if cost:
            pipe.hincrby(key, prefix + "cost_nano", round(cost * NANO))
        if not priced:
            pipe.hincrby(key, prefix + "unpriced_calls", 1)
        pipe.expire(key, DAYS_KEPT * 86400)
        pipe.execute()

    def days(self, project: str, count: int = 14, today: str | None = None) -> list[tuple[str, list[SpendRow]]]:
        """The last ``count`` UTC days, newest first, each with its rows (a day without calls has none)."""
        end = datetime.strptime(today or utc_day(), "%Y-%m-%d")
        names = [(end - timedelta(days=i)).strftime("%Y-%m-%d") for i in range(count)]
        pipe = self.redis.pipeline(transaction=False)
        for day in names:
            pipe.hgetall(self.keys.spend(project, day))
        return [(day, rows(reply)) for day, reply in zip(names, pipe.execute(), strict=True)]

    def today(self, project: str) -> list[SpendRow]:
        return rows(self.redis.hgetall(self.keys.spend(project, utc_day())))

    def spent_today(self, project: str) -> float:
        return sum(row.cost for row in self.today(project))


def rows(fields: dict) -> list[SpendRow]:
    """A day's hash → one row per (role, profile), sorted."""
    found: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
    for raw, value in fields.items():
        parts = text(raw).split("|")
        if len(parts) == 3 and parts[2] in COUNTERS:
            found[(parts[0], parts[1])][parts[2]] = int(value)
    return [
        SpendRow(
            role,
            profile,
            c.get("calls", 0),
            c.get("prompt_tokens", 0),
            c.get("completion_tokens", 0),
            c.get("cost_nano", 0) / NANO,
            c.get("unpriced_calls", 0),
        )
        for (role, profile), c in sorted(found.items())
    ]
