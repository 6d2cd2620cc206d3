"""Live quality counts in Redis: each annotation's contribution to its version's counters, replaceable and removable.

Every scored annotation's contribution (``optimizer.learning.live_quality.contribution``) is kept beside the counts,
under the annotation's id, so an ``ANNOTATION_UPDATED`` takes the earlier contribution away before adding the new
one, and ``ANNOTATIONS_DELETED`` takes it away for good: an annotation counts once, as it stands now. One Lua script
does the swap, guarded by the contribution it expects to replace, so two gunicorn workers handling two webhooks of
the same annotation cannot both subtract the old one (the loser re-reads and tries again).

The script also keeps each version's first-N window (``wn``/``wr``/``wr2``): an annotation that enters while the
window has room stays in it through updates; a deleted one frees its place. The script reports when a new annotation
fills the window (an update inside it does not), so the gate is judged and logged once, at that moment.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

import redis

from optimizer.state.keys import KeyMap, Script
from optimizer.state.replies import text

_APPLY_KEYS = ("scored", "old", "new")
_APPLY_ARGS = ("annotation", "expected", "contribution", "first_n")
_APPLY = """
local current = redis.call('HGET', k_scored, a_annotation) or ''
if current ~= a_expected then return {'retry', 0} end
local function add(key, fields, sign)
  for name, amount in pairs(fields) do
    if amount ~= 0 then  -- and never "-0", which HINCRBY refuses
      local left = redis.call('HINCRBY', key, name, string.format('%d', sign * amount))
      if left == 0 then redis.call('HDEL', key, name) end
    end
  end
end
local was_inside = false
if current ~= '' then
  local old = cjson.decode(current)
  add(k_old, old.f, -1)
  if old.w == 1 then
    add(k_old, {wn = 1, wr = old.f.r, wr2 = old.f.r2}, -1)
    was_inside = k_old == k_new
  end
end
if a_contribution == '' then
  redis.call('HDEL', k_scored, a_annotation)
  return {'removed', 0}
end
local new = cjson.decode(a_contribution)
add(k_new, new.f, 1)
local size = tonumber(a_first_n)
local inside = tonumber(redis.call('HGET', k_new, 'wn') or '0')
local filled = 0
new.w = 0
if inside < size then
  add(k_new, {wn = 1, wr = new.f.r, wr2 = new.f.r2}, 1)
  new.w = 1
  if inside + 1 == size and not was_inside then filled = 1 end
end
redis.call('HSET', k_scored, a_annotation, cjson.encode(new))
return {'scored', filled}
"""

ATTEMPTS = 8


class QualityConflict(RuntimeError):
    """The same annotation kept changing under this write (never seen in practice; the webhook is retried by LS)."""


@dataclass(frozen=True)
class Applied:
    version: str | None
    filled: bool  # this annotation completed its version's first-N window


class QualityCounts:
    def __init__(self, client: redis.Redis, namespace: str) -> None:
        self.redis = client
        self.keys = KeyMap(namespace)
        self._apply = Script(client, _APPLY_KEYS, _APPLY_ARGS, _APPLY)

    def score(self, project: str, annotation: int | str, version: str, counts: dict[str, int], first_n: int) -> Applied:
        """Make ``counts`` the annotation's contribution to ``version`` (replacing any earlier one)."""
        body = json.dumps({"v": version, "f": counts}, ensure_ascii=False, separators=(",", ":"))
        return self._swap(project, str(annotation), body, version, first_n)

    def forget(self, project: str, annotations: Iterable[int | str]) -> int:
        """Take these annotations' contributions away (deleted, cancelled, or no longer scorable); how many had one."""
        removed = 0
        for annotation in annotations:
            removed += self._swap(project, str(annotation), "", None, 1).version is not None
        return removed

    def _swap(self, project: str, annotation: str, body: str, version: str | None, first_n: int) -> Applied:
        scored = self.keys.quality_scored(project)
        for _ in range(ATTEMPTS):
            raw = self.redis.hget(scored, annotation)
            current = text(raw) if raw is not None else ""
            if not current and not body:
                return Applied(None, False)
            old = json.loads(current)["v"] if current else version
            reply = self._apply(
                scored=scored,
                old=self.keys.quality_version(project, old),
                new=self.keys.quality_version(project, version or old),
                annotation=annotation,
                expected=current,
                contribution=body,
                first_n=str(first_n),
            )
            status, filled = text(reply[0]), int(reply[1])
            if status == "scored":
                return Applied(version, bool(filled))
            if status == "removed":
                return Applied(old, False)
        raise QualityConflict(f"annotation {annotation} of project {project} changed {ATTEMPTS} times under one write")

    def counts(self, project: str, versions: Iterable[str]) -> dict[str, dict[str, int]]:
        """Each version's counters, in one round trip."""
        versions = list(versions)
        pipe = self.redis.pipeline(transaction=False)
        for version in versions:
            pipe.hgetall(self.keys.quality_version(project, version))
        replies = pipe.execute()
        return {v: {text(k): int(n) for k, n in reply.items()} for v, reply in zip(versions, replies, strict=True)}

    def unscored(self, project: str) -> dict[str, int]:
        return {text(k): int(v) for k, v in self.redis.hgetall(self.keys.quality_unscored(project)).items()}

    def count_unscored(self, project: str, reason: str) -> None:
        self.redis.hincrby(self.keys.quality_unscored(project), reason, 1)
