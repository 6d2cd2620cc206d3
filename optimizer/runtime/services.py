"""Process-wide wiring from :class:`Settings`: the Redis client, policy store, LLM clients and predictor.

Everything is created lazily on first use, so a gunicorn worker builds its own connections and thread pools after
the fork instead of inheriting broken copies from the master. Nothing here holds shared truth: the store reads it
from Redis on every request.
"""

from __future__ import annotations

from functools import cached_property

import redis

from optimizer.labelstudio.judge import judge_shape
from optimizer.labelstudio.labelconfig import Schema
from optimizer.runtime import telemetry
from optimizer.serving.llm import LLMClient
from optimizer.serving.policy import Policy, load_prompt
from optimizer.serving.predictor import Predictor
from optimizer.settings import Settings, prompt_path
from optimizer.state.bulk import BulkLedger
from optimizer.state.coalesce import Coalescer
from optimizer.state.history import PolicyHistory
from optimizer.state.jobqueue import TrainingQueue
from optimizer.state.llmslots import RedisSlots
from optimizer.state.projects import ProjectRegistry
from optimizer.state.store import PolicyStore


def resolve_prompt(value: str) -> str:
    """``DEFAULT_PROMPT`` with ``@relative/path`` also looked up beside the project, not only in the cwd."""
    found = prompt_path(value[1:]) if value.startswith("@") else None
    return load_prompt("@" + str(found) if found else value)


class Services:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

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
        client = LLMClient(self.settings.labeller(), limiter=self.llm_slots)
        telemetry.instrument_llm(client, "labeller", self.redis, self.settings.redis_namespace)
        return client

    @cached_property
    def proposer(self) -> LLMClient:
        """The optimiser's LLM (``OPTIMIZER_*``, else the labeller's endpoint), counted apart in /metrics."""
        same_endpoint = self.settings.proposer().base_url == self.settings.labeller().base_url
        client = LLMClient(self.settings.proposer(), limiter=self.llm_slots if same_endpoint else None)
        telemetry.instrument_llm(client, "proposer", self.redis, self.settings.redis_namespace)
        return client

    @cached_property
    def predictor(self) -> Predictor:
        return Predictor(self.labeller)

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
    def rq_redis(self) -> redis.Redis:
        """RQ stores pickled jobs, so it needs a connection that does not decode responses."""
        return redis.Redis.from_url(
            self.settings.redis_url,
            socket_timeout=self.settings.redis_timeout,
            socket_connect_timeout=self.settings.redis_timeout,
            health_check_interval=30,
        )

    @cached_property
    def jobs(self) -> TrainingQueue:
        return TrainingQueue(self.rq_redis, self.coalescer, self.settings, self.bulk)
