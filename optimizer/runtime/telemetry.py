"""Prometheus telemetry: what this service did (counted in-process) and what Redis holds (read at scrape time).

Two sources, because they live in different places:

- **Events in a web process** (tasks predicted, ``/predict`` latency, LLM calls/errors/retries/tokens, HTTP
  requests) are prometheus-client counters and histograms. Under gunicorn each worker is its own process, so
  ``gunicorn.conf.py`` points ``PROMETHEUS_MULTIPROC_DIR`` at a directory the workers share and a scrape of any
  worker sums them all (``MultiProcessCollector``).
- **State** (jobs per RQ registry, promotions per project, the current policy's validation score) is read from
  Redis when ``/metrics`` is scraped. Redis is the truth, so every web process reports the same numbers and nothing
  needs to be kept in sync. RQ workers and CLI runs count their LLM usage into a Redis hash for the same reason:
  an RQ job runs in a short-lived forked process whose in-memory counters would vanish with it.

Label cardinality is bounded: projects and policy versions change only on promotion, and predictions made with a
prompt typed by an annotator are counted under ``policy_version="interactive"``, not one series per prompt.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterable, Sequence

# prometheus-client switches to multiprocess mode when the variable merely exists, and an empty value then means "the
# working directory": a process started with PROMETHEUS_MULTIPROC_DIR="" littered the repository with histogram_*.db.
# Empty means unset here, as it does in Settings; this must run before prometheus_client is imported.
if os.environ.get("PROMETHEUS_MULTIPROC_DIR", None) == "":
    del os.environ["PROMETHEUS_MULTIPROC_DIR"]

import prometheus_client
import redis
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

from optimizer.runtime.project_metrics import project_families
from optimizer.serving.llm import LLMClient
from optimizer.serving.modes import Source
from optimizer.serving.predictor import Failure
from optimizer.state.keys import KeyMap
from optimizer.state.replies import text

log = logging.getLogger(__name__)

CONTENT_TYPE = prometheus_client.CONTENT_TYPE_PLAIN_0_0_4  # what generate_latest writes; every Prometheus reads it
INTERACTIVE = "interactive"

prometheus_client.disable_created_metrics()  # *_created series double the output and mean nothing here

# Metrics of this process. In multiprocess mode their values go to PROMETHEUS_MULTIPROC_DIR and this registry is
# never scraped directly (that would count this worker twice).
REGISTRY = CollectorRegistry()

PREDICTIONS = Counter(
    "lsml_predictions_total",
    "Tasks answered by /predict, by project and the policy version that answered them.",
    ["project", "policy_version"],
    registry=REGISTRY,
)
PREDICTION_FAILURES = Counter(
    "lsml_prediction_failures_total",
    "Tasks that got no prediction, by reason (deadline, llm, unparsable, truncated, nothing_found, no_input, "
    "internal, queued, budget).",
    ["project", "reason"],
    registry=REGISTRY,
)
ANSWERS = Counter(
    "lsml_answers_total",
    "Tasks /predict answered, by project and by what answered: the policy's learned ranker (no LLM call) or the LLM.",
    ["project", "source"],
    registry=REGISTRY,
)
PREDICTIONS_SALVAGED = Counter(
    "lsml_predictions_salvaged_total",
    "Tasks whose answer was cut off at the token cap but kept the labels that were complete.",
    ["project"],
    registry=REGISTRY,
)
PREDICT_SECONDS = Histogram(
    "lsml_predict_duration_seconds",
    "Wall time of /predict requests, whole batch.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0),
    registry=REGISTRY,
)
HTTP_REQUESTS = Counter(
    "lsml_http_requests_total",
    "HTTP requests answered, by method, route and status.",
    ["method", "route", "status"],
    registry=REGISTRY,
)
LLM_HELP = {
    "calls": ("lsml_llm_calls", "LLM requests sent (each retry counts)."),
    "errors": ("lsml_llm_errors", "LLM requests that failed."),
    "retries": ("lsml_llm_retries", "LLM requests retried after a retryable failure."),
}
LLM_COUNTERS = {
    name: Counter(metric + "_total", help_text, ["role", "source"], registry=REGISTRY)
    for name, (metric, help_text) in LLM_HELP.items()
}
LLM_TOKENS = Counter(
    "lsml_llm_tokens_total", "LLM tokens used, by kind (prompt, completion).", ["role", "kind", "source"],
    registry=REGISTRY,
)  # fmt: skip

_component = "web"


def set_component(name: str) -> None:
    """Which process this is. ``web`` counts LLM usage in-process; anything else (worker, cli) counts it in Redis."""
    global _component
    _component = name


def component() -> str:
    return _component


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


# --- recording -------------------------------------------------------------------------------------------------
def record_predictions(
    project: str,
    policy_version: str,
    errors: Sequence[Failure | None],
    salvaged: int = 0,
    sources: Sequence[Source] = (),
) -> None:
    """Count one batch: ``errors`` holds each task's failure reason, ``None`` for a task that was answered;
    ``sources`` says, for each answered task, whether the ranker or the LLM answered it."""
    PREDICTIONS.labels(project, policy_version).inc(len(errors))
    for source in set(sources):
        ANSWERS.labels(project, source.value).inc(sum(1 for s in sources if s is source))
    for error in errors:
        if error:
            PREDICTION_FAILURES.labels(project, error.reason.value).inc()
    if salvaged:
        PREDICTIONS_SALVAGED.labels(project).inc(salvaged)


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    HTTP_REQUESTS.labels(method, route, str(status)).inc()
    if route == "/predict":
        PREDICT_SECONDS.observe(seconds)


def instrument_llm(client: LLMClient, role: str, store: redis.Redis | None = None, namespace: str = "lsml") -> None:
    """Count ``client``'s usage: in-process in a web worker, else in Redis (``HINCRBY``, survives forked jobs)."""
    if _component == "web" or store is None:
        source = "web"
        children = {name: counter.labels(role, source) for name, counter in LLM_COUNTERS.items()}
        children["prompt_tokens"] = LLM_TOKENS.labels(role, "prompt", source)
        children["completion_tokens"] = LLM_TOKENS.labels(role, "completion", source)

        def listen(name: str, amount: int) -> None:
            child = children.get(name)
            if child is not None and amount:
                child.inc(amount)

    else:
        key, prefix = KeyMap(namespace).llm_usage(), f"{_component}|{role}|"

        def listen(name: str, amount: int) -> None:
            if not amount:
                return
            try:
                store.hincrby(key, prefix + name, amount)
            except redis.RedisError as exc:  # metrics must never fail a job
                log.debug("cannot count LLM usage in Redis: %s", exc.__class__.__name__)

    client.usage.listeners.append(listen)


# --- state read from Redis at scrape time ----------------------------------------------------------------------
def rq_keys(queue: str) -> dict[str, tuple[str, str]]:
    """Job state → (Redis type, key) as RQ 2.x/3.x lays them out (``rq.Queue.key``, ``rq.registry.*.key``)."""
    return {
        "queued": ("list", f"rq:queue:{queue}"),
        "running": ("zset", f"rq:wip:{queue}"),
        "deferred": ("zset", f"rq:deferred:{queue}"),
        "scheduled": ("zset", f"rq:scheduled:{queue}"),
        "failed": ("zset", f"rq:failed:{queue}"),
        "succeeded": ("zset", f"rq:finished:{queue}"),
    }


class RedisStateCollector:
    """Reads jobs, promotions, validation scores and worker LLM usage from Redis with two pipelined round trips.

    Read-only on purpose (no RQ ``cleanup()``, which moves jobs around): a scrape must not change what it measures.
    The validation score of a version is cached in-process; it is safe because a policy body never changes.
    """

    def __init__(self, client: redis.Redis, namespace: str, queues: Sequence[str], first_n: int = 30) -> None:
        self.redis = client
        self.keys = KeyMap(namespace)
        self.queues = tuple(queues)  # the training queue and the bulk queue
        self.first_n = first_n  # LIVE_GATE_ANNOTATIONS, for the live regression gauge
        self._scores: dict[str, float | None] = {}
        self._lock = threading.Lock()

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily("lsml_redis_up", "1 when the last /metrics scrape could read Redis.")
        try:
            families = self._read()
        except redis.RedisError as exc:
            log.warning("metrics: cannot read Redis: %s", exc.__class__.__name__)
            up.add_metric([], 0)
            return [up]
        up.add_metric([], 1)
        return [up, *families]

    def _read(self) -> list[Metric]:
        keys = [(queue, state, kind, key) for queue in self.queues for state, (kind, key) in rq_keys(queue).items()]
        pipe = self.redis.pipeline(transaction=False)
        for _, _, kind, key in keys:
            pipe.llen(key) if kind == "list" else pipe.zcard(key)
        pipe.smembers(self.keys.projects())
        pipe.hgetall(self.keys.llm_usage())
        pipe.hgetall(self.keys.bulk_metrics())
        replies = pipe.execute()
        counts, projects, usage, bulk = replies[: len(keys)], sorted(replies[-3]), replies[-2], replies[-1]

        pipe = self.redis.pipeline(transaction=False)
        for project in projects:
            pipe.llen(self.keys.history(project))
            pipe.get(self.keys.current(project))
        replies = pipe.execute()
        histories, currents = replies[0::2], replies[1::2]

        jobs = GaugeMetricFamily("lsml_jobs", "RQ jobs per state, read from the queue and its registries.",
                                 labels=["queue", "state"])  # fmt: skip
        for (queue, state, _, _), count in zip(keys, counts, strict=True):
            jobs.add_metric([queue, state], count)
        promotions = CounterMetricFamily(
            "lsml_policy_promotions", "Policy promotions per project (length of its history).", labels=["project"]
        )
        score = GaugeMetricFamily(
            "lsml_policy_val_score",
            "Validation score of each project's current policy, when the optimiser recorded one.",
            labels=["project", "policy_version"],
        )
        for project, length, version in zip(projects, histories, currents, strict=True):
            promotions.add_metric([text(project)], length)
            value = self._score(text(version)) if version else None
            if value is not None:
                score.add_metric([text(project), text(version)], value)
        bulk_tasks = CounterMetricFamily(
            "lsml_bulk_tasks",
            "Tasks handled by bulk pre-annotation jobs, by outcome (posted, skipped, failed_<reason>, ...).",
            labels=["project", "outcome"],
        )
        for field, amount in sorted((text(k), int(v)) for k, v in bulk.items()):
            project, _, outcome = field.rpartition("|")
            bulk_tasks.add_metric([project, outcome], amount)
        live = project_families(self.redis, self.keys, [text(p) for p in projects], self.first_n)
        return [jobs, promotions, score, bulk_tasks, *_usage_families(usage), *live]

    def _score(self, version: str) -> float | None:
        with self._lock:
            if version in self._scores:
                return self._scores[version]
        raw = self.redis.get(self.keys.policy(version))
        value = None
        if raw:
            try:
                found = (json.loads(raw).get("meta") or {}).get("val_score")
                value = float(found) if isinstance(found, int | float) and not isinstance(found, bool) else None
            except (ValueError, AttributeError):
                value = None
        with self._lock:
            if len(self._scores) > 4096:
                self._scores.clear()
            self._scores[version] = value
        return value


def _usage_families(usage: dict) -> list[Metric]:
    """LLM usage counted in Redis by workers and CLI runs, as the same families the web counts in-process."""
    families = {name: CounterMetricFamily(metric, help_text, labels=["role", "source"])
                for name, (metric, help_text) in LLM_HELP.items()}  # fmt: skip
    tokens = CounterMetricFamily("lsml_llm_tokens", "LLM tokens used, by kind (prompt, completion).",
                                 labels=["role", "kind", "source"])  # fmt: skip
    for field, amount in sorted((text(k), int(v)) for k, v in usage.items()):
        parts = field.split("|")
        if len(parts) != 3:
            continue
        source, role, name = parts
        if name in families:
            families[name].add_metric([role, source], amount)
        elif name.endswith("_tokens"):
            tokens.add_metric([role, name.removesuffix("_tokens"), source], amount)
    return [f for f in (*families.values(), tokens) if f.samples]


# --- read back, for the dashboard -------------------------------------------------------------------------------
def prediction_counts() -> dict[str, dict]:
    """Per project: tasks answered by ``/predict`` and those that came back empty, by reason.

    The same counters ``/metrics`` exposes (all gunicorn workers summed in multiprocess mode), so the dashboard and
    a Prometheus scrape agree. Like any Prometheus counter they start again from zero when the service restarts.
    """
    path = multiprocess_dir()
    families = MultiProcessCollector(None, path=path).collect() if path else REGISTRY.collect()
    out: dict[str, dict] = {}
    for family in families:
        if family.name not in ("lsml_predictions", "lsml_prediction_failures"):
            continue
        for sample in family.samples:
            if not sample.name.endswith("_total"):
                continue
            counts = out.setdefault(sample.labels["project"], {"served": 0, "empty": 0, "reasons": {}})
            if family.name == "lsml_predictions":
                counts["served"] += int(sample.value)
            else:
                reason = sample.labels["reason"]
                counts["empty"] += int(sample.value)
                counts["reasons"][reason] = counts["reasons"].get(reason, 0) + int(sample.value)
    return out


# --- exposition ------------------------------------------------------------------------------------------------
class _Families:
    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> list[Metric]:
        return self._families


def merge(sources: Iterable[Iterable[Metric]]) -> list[Metric]:
    """One family per name: the web's in-process LLM counters and the workers' Redis ones share their names."""
    merged: dict[str, Metric] = {}
    for source in sources:
        for family in source:
            if family.name in merged:
                merged[family.name].samples.extend(family.samples)
            else:
                merged[family.name] = family
    return list(merged.values())


def render(state: RedisStateCollector | None = None) -> bytes:
    """The Prometheus text exposition of this service: every web worker's events plus the Redis state."""
    path = multiprocess_dir()
    events = MultiProcessCollector(None, path=path).collect() if path else REGISTRY.collect()
    sources = [events] + ([state.collect()] if state is not None else [])
    return prometheus_client.generate_latest(_Families(merge(sources)))
