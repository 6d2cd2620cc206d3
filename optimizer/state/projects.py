"""What the backend knows about each Label Studio project, beyond its policy: label config, id alias, recent events.

Label Studio names a project ``<id>.<created_ts>`` in ``/setup`` and ``/predict`` (and the protocol layer rebuilds
the same uid from webhook payloads), but people and the SDK use the bare numeric id. The alias index maps one to the
other so the HTTP API and the CLI accept either. If two Label Studio instances share one backend and reuse an id,
the alias points at the project seen last; the full uid is always unambiguous.

The label config is stored per project because a training job, started from a webhook that may carry no config,
must render tasks exactly as ``/predict`` did. It is written only when it changes (compared inside Lua), so the
``/setup`` calls Label Studio makes before every prediction cost one small round trip.

The project's Extra params (validated by :mod:`optimizer.project_settings`) are stored the same way, by ``/setup``
only, because Label Studio sends them nowhere else; ``/predict``, training jobs and webhooks read this copy.

Keys (see :mod:`optimizer.state.keys`): the project's config, settings, numeric-id alias and capped event list.
"""

from __future__ import annotations

import json
import time

import redis

from optimizer.labelstudio.ids import numeric_id
from optimizer.state.keys import KeyMap, Script
from optimizer.state.replies import text

_SEEN_KEYS = ("alias", "config", "projects")
_SEEN_ARGS = ("has_alias", "label_config", "project")
_SEEN = """
redis.call('SADD', k_projects, a_project)
if a_has_alias ~= '' and redis.call('GET', k_alias) ~= a_project then redis.call('SET', k_alias, a_project) end
if a_label_config ~= '' and redis.call('GET', k_config) ~= a_label_config then
  redis.call('SET', k_config, a_label_config)
end
return 1
"""


class ProjectRegistry:
    def __init__(self, client: redis.Redis, namespace: str, event_log_size: int = 100) -> None:
        self.redis = client
        self.keys = KeyMap(namespace)
        self.event_log_size = event_log_size
        self._seen = Script(client, _SEEN_KEYS, _SEEN_ARGS, _SEEN)

    def seen(self, project: str, label_config: str | None = None) -> None:
        """Record a project uid (alias of its numeric id) and its label config, when either is new."""
        number = numeric_id(project)
        has_alias = number is not None and "." in project
        self._seen(
            alias=self.keys.alias(number if has_alias else "-"),
            config=self.keys.config(project),
            projects=self.keys.projects(),
            has_alias="1" if has_alias else "",
            label_config=label_config or "",
            project=project,
        )

    def resolve(self, ref: str) -> str:
        """A project reference (full uid, or numeric id with a known alias) → the key its policies live under."""
        ref = ref.strip()
        if ref.isdigit():
            alias = self.redis.get(self.keys.alias(ref))
            if alias:
                return alias.decode() if isinstance(alias, bytes) else alias
        return ref

    def all(self) -> list[str]:
        """Every project uid the backend has seen, sorted by numeric id (then uid)."""
        found = [text(m) for m in self.redis.smembers(self.keys.projects())]
        return sorted(found, key=lambda p: (numeric_id(p) is None, numeric_id(p) or 0, p))

    def known(self, project: str) -> bool:
        return bool(self.redis.sismember(self.keys.projects(), project))

    def save_settings(self, project: str, settings_json: str | None) -> None:
        """The project's validated Extra params (None: the defaults), written only when they changed."""
        key = self.keys.settings(project)
        current = self.redis.get(key)
        current = current.decode() if isinstance(current, bytes) else current
        if settings_json is None and current is not None:
            self.redis.delete(key)
        elif settings_json is not None and current != settings_json:
            self.redis.set(key, settings_json)

    def settings(self, project: str) -> str | None:
        value = self.redis.get(self.keys.settings(project))
        return value.decode() if isinstance(value, bytes) else value

    def label_config(self, project: str) -> str | None:
        value = self.redis.get(self.keys.config(project))
        return value.decode() if isinstance(value, bytes) else value

    def record_served_version(self, project: str, version: str, parts: dict) -> None:
        """Note what a served ``model_version`` was made of, the first time it is served (``HSETNX``: one cheap
        round trip, and ``/setup`` is called before every prediction)."""
        entry = json.dumps({**parts, "at": round(time.time(), 3)}, sort_keys=True)
        self.redis.hsetnx(self.keys.served_versions(project), version, entry)

    def served_versions(self, project: str) -> dict[str, dict]:
        """Every served ``model_version`` of the project → its parts (policy, config, model) and first sight."""
        raw = self.redis.hgetall(self.keys.served_versions(project))
        return {text(k): json.loads(v) for k, v in raw.items()}

    def record_event(self, project: str, action: str, summary: dict) -> None:
        """Keep a short, secret-free summary of a webhook (never the payload: it carries the project's token)."""
        if self.event_log_size <= 0:
            return
        entry = json.dumps({"action": action, "at": round(time.time(), 3), **summary}, sort_keys=True)
        key = self.keys.events(project)
        pipe = self.redis.pipeline(transaction=True)
        pipe.lpush(key, entry)
        pipe.ltrim(key, 0, self.event_log_size - 1)
        pipe.execute()

    def events(self, project: str, limit: int = 50) -> list[dict]:
        raw = self.redis.lrange(self.keys.events(project), 0, max(0, limit - 1))
        return [json.loads(r) for r in raw]
