"""The one Redis key map, and named KEYS/ARGV for every Lua script.

Every key the backend reads or writes is spelled here and nowhere else, so renaming one cannot silently break a
reader elsewhere (``/metrics`` used to spell the store's keys out by hand). ``ns`` is ``REDIS_NAMESPACE``; two
deployments sharing a Redis keep apart by namespace.

Layout (``<p>`` is the project uid Label Studio sends, ``12.1700000000``):

| key | type | what |
| --- | --- | --- |
| ``ns:policy:<version>`` | string | a policy body (JSON), written once: the version is a hash of the content |
| ``ns:projects`` | set | every project uid seen |
| ``ns:alias:<id>`` | string | numeric Label Studio id → project uid |
| ``ns:project:<p>:current`` | string | the live policy version |
| ``ns:project:<p>:history`` | list | one JSON entry per promotion, oldest first |
| ``ns:project:<p>:pinned`` | string | present while automatic promotion is off |
| ``ns:project:<p>:policies`` | hash | version → record (parent, job, scores, source) of every policy offered |
| ``ns:project:<p>:config`` | string | the project's label config, as ``/setup`` last sent it |
| ``ns:project:<p>:settings`` | string | the project's validated Extra params (JSON, no secrets), from ``/setup`` |
| ``ns:project:<p>:events`` | list | recent webhook events, newest first, capped |
| ``ns:project:<p>:served-versions`` | hash | a served ``model_version`` → its parts (policy, config, model) |
| ``ns:train:<p>:state`` | hash | ``queued``/``queued_at`` and ``followup`` run ids |
| ``ns:train:<p>:lease`` | string | the running training job's id, with a TTL its heartbeat renews |
| ``ns:train:<p>:count`` | string | annotations since the last run |
| ``ns:train:job:<id>`` | string | the project a training job id belongs to |
| ``ns:train:projects`` | set | projects that ever had a training trigger (for the crash sweep) |
| ``ns:metrics:llm`` | hash | LLM usage counted by workers and the CLI, ``component|role|field`` → count |
| ``ns:bulk:<p>:<version>:claim:<task>`` | string | the bulk job predicting that task now (TTL, renewed) |
| ``ns:bulk:<p>:<version>:done`` | set | task ids whose prediction of that version is in Label Studio |
| ``ns:bulk:run:<id>`` | hash | one bulk pre-annotation run: project, version, chunk job ids, task counts by outcome |
| ``ns:bulk:run:<id>:open`` | set | the run's chunk jobs that have not ended yet (queued, running, retrying) |
| ``ns:bulk:run:<id>:failed`` | hash | task id → why it still has no prediction after the chunk's last attempt (JSON) |
| ``ns:metrics:bulk`` | hash | bulk pre-annotation task counts, ``project|outcome`` → count |
| ``ns:served:<p>:<task>`` | string | what the backend last answered for a task: model version and answer (TTL) |
| ``ns:quality:<p>:versions`` | zset | every version that answered the project, scored by when it first did (ms) |
| ``ns:quality:<p>:last`` | string | the version that answered the project last, and when (JSON) |
| ``ns:quality:<p>:version:<v>`` | hash | a version's live counts: annotations, scores, TP/FP/FN, confusions |
| ``ns:quality:<p>:scored`` | hash | annotation id → what it added to its version's counts (replaced on update) |
| ``ns:quality:<p>:unscored`` | hash | annotation events not scored, by reason → count |
| ``ns:spend:<p>:<day>`` | hash | LLM spend of one UTC day, ``role|profile|field`` → count (tokens, calls, nano-units) |
| ``ns:job:<id>:cancel`` | string | a cancel request for that job (who, when), or ``committed`` while it promotes |
| ``ns:llm:slots`` | zset | the cross-process LLM semaphore: holder id → lease expiry (ms) |
| ``ns:llm:waiting`` | zset | interactive callers waiting for a slot: id → give-up time (ms) |
| ``ns:dashboard:csrf-key`` | string | the random key the dashboard signs its CSRF tokens with, made once |

Lua scripts take their keys and arguments by name through :class:`Script`: each script declares the names, gets
them as Lua locals (``k_current``, ``a_parent``), and is called with keyword arguments, so a call site can never pass
them in the wrong order.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis


@dataclass(frozen=True)
class KeyMap:
    ns: str = "lsml"

    def _key(self, *parts: str) -> str:
        return ":".join((self.ns, *parts))

    # -- policies and projects ----------------------------------------------------------------------------------
    def policy(self, version: str) -> str:
        return self._key("policy", version)

    def projects(self) -> str:
        return self._key("projects")

    def alias(self, numeric_id: int | str) -> str:
        return self._key("alias", str(numeric_id))

    def current(self, project: str) -> str:
        return self._key("project", project, "current")

    def history(self, project: str) -> str:
        return self._key("project", project, "history")

    def pinned(self, project: str) -> str:
        return self._key("project", project, "pinned")

    def policies(self, project: str) -> str:
        return self._key("project", project, "policies")

    def config(self, project: str) -> str:
        return self._key("project", project, "config")

    def settings(self, project: str) -> str:
        return self._key("project", project, "settings")

    def events(self, project: str) -> str:
        return self._key("project", project, "events")

    def served_versions(self, project: str) -> str:
        return self._key("project", project, "served-versions")

    # -- training runs ------------------------------------------------------------------------------------------
    def train_state(self, project: str) -> str:
        # Not ``train:<p>``: a project named "projects" would then share the key of the ``train:projects`` set.
        return self._key("train", project, "state")

    def train_lease(self, project: str) -> str:
        return self._key("train", project, "lease")

    def train_count(self, project: str) -> str:
        return self._key("train", project, "count")

    def train_job(self, job_id: str) -> str:
        return self._key("train", "job", job_id)

    def train_projects(self) -> str:
        return self._key("train", "projects")

    # -- bulk pre-annotation -------------------------------------------------------------------------------------
    def bulk_claim(self, project: str, version: str, task: int | str) -> str:
        return self._key("bulk", project, version, "claim", str(task))

    def bulk_done(self, project: str, version: str) -> str:
        return self._key("bulk", project, version, "done")

    def bulk_run(self, run_id: str) -> str:
        return self._key("bulk", "run", run_id)

    def bulk_open(self, run_id: str) -> str:
        return self._key("bulk", "run", run_id, "open")

    def bulk_failed(self, run_id: str) -> str:
        return self._key("bulk", "run", run_id, "failed")

    def bulk_metrics(self) -> str:
        return self._key("metrics", "bulk")

    # -- live quality: what the backend answered, and annotations scored against it ---------------------------------
    def served(self, project: str, task: int | str) -> str:
        return self._key("served", project, str(task))

    def quality_versions(self, project: str) -> str:
        return self._key("quality", project, "versions")

    def quality_last(self, project: str) -> str:
        return self._key("quality", project, "last")

    def quality_version(self, project: str, version: str) -> str:
        return self._key("quality", project, "version", version)

    def quality_scored(self, project: str) -> str:
        return self._key("quality", project, "scored")

    def quality_unscored(self, project: str) -> str:
        return self._key("quality", project, "unscored")

    # -- spend ---------------------------------------------------------------------------------------------------
    def spend(self, project: str, day: str) -> str:
        return self._key("spend", project, day)

    # -- any job ------------------------------------------------------------------------------------------------
    def job_cancel(self, job_id: str) -> str:
        return self._key("job", job_id, "cancel")

    # -- the LLM endpoint, shared by every process ----------------------------------------------------------------
    def llm_slots(self) -> str:
        return self._key("llm", "slots")

    def llm_waiting(self) -> str:
        return self._key("llm", "waiting")

    # -- telemetry ----------------------------------------------------------------------------------------------
    def llm_usage(self) -> str:
        return self._key("metrics", "llm")

    # -- dashboard ----------------------------------------------------------------------------------------------
    def dashboard_csrf_key(self) -> str:
        return self._key("dashboard", "csrf-key")


class Script:
    """A Lua script whose KEYS and ARGV have names: ``Script(client, ("current",), ("parent",), body)``.

    The body sees ``k_<name>`` for each key and ``a_<name>`` for each argument; the caller passes every one of them
    as a keyword, and a missing or unknown name raises ``TypeError`` before anything reaches Redis.
    """

    def __init__(self, client: redis.Redis, keys: tuple[str, ...], args: tuple[str, ...], body: str) -> None:
        if len(set(keys) | set(args)) != len(keys) + len(args):
            raise ValueError(f"Lua key and argument names must be unique: {keys} {args}")
        self.keys, self.args = keys, args
        prelude = [f"local k_{name} = KEYS[{i}]" for i, name in enumerate(keys, 1)]
        prelude += [f"local a_{name} = ARGV[{i}]" for i, name in enumerate(args, 1)]
        self.source = "\n".join(prelude) + "\n" + body
        self._script = client.register_script(self.source)

    def __call__(self, **values):
        expected = set(self.keys) | set(self.args)
        if set(values) != expected:
            missing, unknown = sorted(expected - set(values)), sorted(set(values) - expected)
            raise TypeError(f"Lua script called with missing {missing} / unknown {unknown}")
        return self._script(keys=[values[k] for k in self.keys], args=[values[a] for a in self.args])
