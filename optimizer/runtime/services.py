"""Process-wide wiring from :class:`Settings`: the Redis client, policy store, LLM clients, predictor and the Label
Studio client. (The job queue sits one layer up, in ``optimizer.jobs``, beside the functions it queues.)

Everything is created lazily on first use, so a gunicorn worker builds its own connections and thread pools after
the fork instead of inheriting broken copies from the master. Nothing here holds shared truth: the store reads it
from Redis on every request.
"""

from __future__ import annotations

import threading
from functools import cached_property

import redis

from optimizer.labelstudio.client import LabelStudioClient
from optimizer.labelstudio.judge import judge_shape
from optimizer.labelstudio.labelconfig import Schema
from optimizer.project_settings import ProjectChoices, ProjectConfig, effective
from optimizer.runtime import spend, telemetry
from optimizer.serving.llm import LLMClient, LLMConfig
from optimizer.serving.policy import Policy, load_prompt
from optimizer.serving.predictor import Predictor
from optimizer.settings import Settings, prompt_path
from optimizer.state.bulk import BulkLedger
from optimizer.state.cancels import CancelRegistry
from optimizer.state.coalesce import Coalescer
from optimizer.state.history import PolicyHistory
from optimizer.state.llmslots import RedisSlots
from optimizer.state.projects import ProjectRegistry
from optimizer.state.quality import QualityCounts
from optimizer.state.served import ServedAnswers
from optimizer.state.spend import SpendLedger
from optimizer.state.store import PolicyStore, PromoteStatus, StoreUnavailable


def resolve_prompt(value: str) -> str:
    """``DEFAULT_PROMPT`` with ``@relative/path`` also looked up beside the project, not only in the cwd."""
    found = prompt_path(value[1:]) if value.startswith("@") else None
    return load_prompt("@" + str(found) if found else value)


class Services:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._clients: dict[LLMConfig, tuple[LLMClient, Predictor]] = {}
        self._clients_lock = threading.Lock()
        self._last_settings: dict[str, str | None] = {}

    @cached_property
    def redis(self) -> redis.Redis:
        timeout = self.settings.redis_timeout
        return redis.Redis.from_url(
            self.settings.redis_url,
            decode_responses=True,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            health_check_interval=30,
        )

    @cached_property
    def default_policy(self) -> Policy:
        return Policy(instruction=resolve_prompt(self.settings.default_prompt))

    @cached_property
    def judge_policy(self) -> Policy:
        """The default for reward-scoring configs (``labelstudio.judge``): an instruction fit for grading."""
        return Policy(instruction=resolve_prompt(self.settings.default_judge_prompt))

    def default_for(self, schema: Schema | None, live: Policy) -> Policy:
        """``live``, unless the project still runs on the generic default and its config is a judge's."""
        if live.version == self.default_policy.version and schema is not None and judge_shape(schema):
            return self.judge_policy
        return live

    def served_policy(self, project: str, schema: Schema | None, record: bool = True) -> Policy:
        """The policy a request for ``project`` is served: its live one, or for a reward-scoring project still on
        the generic default, the judge's default, made the project's live policy in Redis on first sight.

        Recording it (a compare-and-set from the default, like any promotion) keeps history, rollback and pin
        truthful: ``/projects/<id>/policies`` shows the judge's instruction as live, and a user who rolls back to
        another policy (the generic default included) overrides it like any policy: only a project with no
        promotion history yet is switched, and a pinned project keeps what it was pinned to. Without
        Redis, or with ``record`` off (a request naming no project), the judge's default is served unrecorded.
        """
        live = self.store.current(project)
        judge = self.default_for(schema, live)
        if judge is live or not record or self.store.degraded:
            return judge
        try:
            if self.redis.exists(self.store.keys.history(project)):
                return live  # promoted or rolled back before: the generic default was chosen on purpose
            status = self.store.promote(project, judge, parent=live.version, source="judge default").status
        except (StoreUnavailable, redis.RedisError):
            return judge
        if status is PromoteStatus.PINNED:
            return live
        return judge if status is not PromoteStatus.STALE else self.store.current(project)

    @cached_property
    def store(self) -> PolicyStore:
        return PolicyStore(self.redis, self.default_policy, namespace=self.settings.redis_namespace)

    @cached_property
    def llm_slots(self) -> RedisSlots | None:
        """The stack-wide bound on calls in flight to the labelling endpoint, or None when it is off."""
        limit = self.settings.llm_global_concurrency
        if limit <= 0:
            return None
        return RedisSlots(self.redis, self.settings.redis_namespace, limit, lease=self.settings.llm_timeout + 5)

    @cached_property
    def labeller(self) -> LLMClient:
        return self.instrument(LLMClient(self.settings.labeller_config(), limiter=self.llm_slots), "labeller")

    @cached_property
    def proposer(self) -> LLMClient:
        """The optimiser's LLM (``OPTIMIZER_*``, else the labeller's endpoint), counted apart in /metrics."""
        same_endpoint = self.settings.proposer_config().base_url == self.settings.labeller_config().base_url
        client = LLMClient(self.settings.proposer_config(), limiter=self.llm_slots if same_endpoint else None)
        return self.instrument(client, "proposer")

    def instrument(self, client: LLMClient, role: str) -> LLMClient:
        """Count ``client``'s usage in /metrics and charge its answered calls to the projects they were made for."""
        telemetry.instrument_llm(client, role, self.redis, self.settings.redis_namespace)
        spend.meter(client, role, self.settings, self.spend)
        return client

    @cached_property
    def spend(self) -> SpendLedger:
        return SpendLedger(self.redis, self.settings.redis_namespace)

    @cached_property
    def served(self) -> ServedAnswers:
        return ServedAnswers(self.redis, self.settings.redis_namespace, self.settings.served_answer_ttl)

    @cached_property
    def quality(self) -> QualityCounts:
        return QualityCounts(self.redis, self.settings.redis_namespace)

    @cached_property
    def predictor(self) -> Predictor:
        return Predictor(self.labeller)

    def project_settings(self, project: str | None) -> ProjectConfig:
        """The project's effective LLM settings (its Extra params over the defaults), read from Redis.

        With Redis unreachable the last copy this process read is used, like the store's last policy. Raises
        :class:`optimizer.project_settings.ProfileGone` when the stored choice names a removed profile.
        """
        stored = None
        if project:
            try:
                stored = self.projects.settings(project)
                self._last_settings[project] = stored
            except redis.RedisError:
                stored = self._last_settings.get(project)
        return effective(self.settings, ProjectChoices.from_json(stored) if stored else None)

    def _client_pair(self, config: LLMConfig) -> tuple[LLMClient, Predictor]:
        if config == self.settings.labeller_config():
            return self.labeller, self.predictor
        with self._clients_lock:
            if config not in self._clients:
                # A profile on the default endpoint shares its stack-wide limit; another endpoint has only its own.
                shared = config.base_url == self.settings.labeller_config().base_url
                client = self.instrument(LLMClient(config, limiter=self.llm_slots if shared else None), "labeller")
                self._clients[config] = (client, Predictor(client))
            return self._clients[config]

    def labeller_for(self, config: LLMConfig) -> LLMClient:
        """One client per distinct labelling config (a profile plus a project's knobs), each with its own bound."""
        return self._client_pair(config)[0]

    def predictor_for(self, config: LLMConfig) -> Predictor:
        return self._client_pair(config)[1]

    @cached_property
    def history(self) -> PolicyHistory:
        return PolicyHistory(self.store)

    @cached_property
    def projects(self) -> ProjectRegistry:
        return ProjectRegistry(self.redis, self.settings.redis_namespace, self.settings.event_log_size)

    @cached_property
    def coalescer(self) -> Coalescer:
        return Coalescer(self.redis, self.settings.redis_namespace)

    @cached_property
    def bulk(self) -> BulkLedger:
        return BulkLedger(self.redis, self.settings.redis_namespace, done_ttl=self.settings.job_result_ttl)

    @cached_property
    def cancels(self) -> CancelRegistry:
        return CancelRegistry(self.redis, self.settings.redis_namespace, ttl=self.settings.job_result_ttl)

    @cached_property
    def rq_redis(self) -> redis.Redis:
        """RQ stores pickled jobs, so it needs a connection that does not decode responses."""
        return redis.Redis.from_url(
            self.settings.redis_url,
            socket_timeout=self.settings.redis_timeout,
            socket_connect_timeout=self.settings.redis_timeout,
            health_check_interval=30,
        )

    @cached_property
    def label_studio(self) -> LabelStudioClient:
        """The one client to Label Studio (``LABEL_STUDIO_URL`` with the server's key): training and bulk jobs read
        and post through it, the export reads through it. Raises ``LabelStudioNotConfigured`` when either is unset.
        """
        settings = self.settings
        return LabelStudioClient(
            settings.label_studio_url,
            settings.label_studio_api_key.get_secret_value(),
            timeout=settings.label_studio_timeout,
        )
