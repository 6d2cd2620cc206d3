"""What the backend last answered for each task, so an annotation can be scored against the prediction it holds.

Label Studio's annotation webhook carries the annotation and the task's data but not the task's predictions, and
reading them back from Label Studio per annotation would cost an API call each and a worker to make it. The backend
knows what it answered: ``/predict`` (a Retrieve Predictions, or a task opened in live mode) and every bulk chunk
that posted, record here the ``model_version`` and the answer they gave Label Studio, one small key per task with a
TTL (``SERVED_ANSWER_TTL``). A later answer for the same task replaces the earlier one, as the newer prediction is
the one Label Studio shows first. Interactive answers (an annotator's typed prompt) are shown but never stored by
Label Studio, so they are not recorded.

Memory: one string key per task with a TTL, about 230 bytes for a one-label answer and 280 for four labels in two
controls (``python -m bench.live_quality``: 100,000 tasks took 22 and 26 MB of Redis).

The ``versions`` sorted set keeps the order in which versions first answered the project: a version's parent, for
the live gate, is the one that answered before it, whatever the version strings look like.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass

import redis

from optimizer.state.keys import KeyMap


@dataclass(frozen=True)
class ServedAnswer:
    version: str
    answer: dict


class ServedAnswers:
    def __init__(self, client: redis.Redis, namespace: str, ttl: int) -> None:
        self.redis = client
        self.keys = KeyMap(namespace)
        self.ttl = ttl

    def remember(self, project: str, answers: Iterable[tuple[int, str, dict]]) -> int:
        """Record ``(task id, model version, answer)`` for each task, in one round trip; returns how many."""
        pipe = self.redis.pipeline(transaction=False)
        now = int(time.time() * 1000)
        versions: dict[str, None] = {}
        count = 0
        for task, version, answer in answers:
            body = json.dumps({"v": version, "a": answer}, ensure_ascii=False, separators=(",", ":"))
            pipe.set(self.keys.served(project, task), body, ex=self.ttl)
            versions[version] = None
            count += 1
        if not count:
            return 0
        for version in versions:
            pipe.zadd(self.keys.quality_versions(project), {version: now}, nx=True)
        last = json.dumps({"version": list(versions)[-1], "at": round(now / 1000, 3)})
        pipe.set(self.keys.quality_last(project), last)
        pipe.execute()
        return count

    def get(self, project: str, task: int | str) -> ServedAnswer | None:
        raw = self.redis.get(self.keys.served(project, task))
        if raw is None:
            return None
        try:
            body = json.loads(raw)
            return ServedAnswer(str(body["v"]), dict(body["a"]))
        except (ValueError, KeyError, TypeError):
            return None

    def last_answered(self, project: str) -> dict | None:
        """``{"version", "at"}``: the version that answered the project last (the one Label Studio shows now)."""
        raw = self.redis.get(self.keys.quality_last(project))
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            return None

    def versions(self, project: str) -> list[tuple[str, float]]:
        """(version, first answered at, unix seconds) in the order the versions first answered, oldest first."""
        found = self.redis.zrange(self.keys.quality_versions(project), 0, -1, withscores=True)
        return [(v.decode() if isinstance(v, bytes) else v, score / 1000) for v, score in found]
