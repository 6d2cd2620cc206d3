"""Per-project live quality and spend as Prometheus families, read from Redis when ``/metrics`` is scraped.

Gauges, not counters: live F1 moves both ways as annotations are updated or deleted, and "today's spend" starts
again at zero each UTC day (for spend over any other window, ``increase()`` over ``lsml_project_spend_today`` is
wrong across midnight; read ``GET /projects/<p>/spend``). Cardinality stays bounded: the newest
``VERSIONS_SHOWN`` versions per project, and profiles are the operator's ``LLM_PROFILES``.
"""

from __future__ import annotations

import itertools
import json

import redis
from prometheus_client.core import GaugeMetricFamily, Metric

from optimizer.learning.live_quality import Moments, live_gate
from optimizer.state.keys import KeyMap
from optimizer.state.replies import text
from optimizer.state.spend import rows, utc_day

VERSIONS_SHOWN = 20
MOMENTS = ("n", "r", "r2", "wn", "wr", "wr2")


def project_families(client: redis.Redis, keys: KeyMap, projects: list[str], first_n: int) -> list[Metric]:
    day = utc_day()
    pipe = client.pipeline(transaction=False)
    for project in projects:
        pipe.zrange(keys.quality_versions(project), -VERSIONS_SHOWN, -1)
        pipe.hgetall(keys.spend(project, day))
        pipe.get(keys.settings(project))
    replies = pipe.execute()
    versions = {p: [text(v) for v in replies[3 * i]] for i, p in enumerate(projects)}

    pipe = client.pipeline(transaction=False)
    for project in projects:
        for version in versions[project]:
            pipe.hmget(keys.quality_version(project, version), MOMENTS)
    moments = iter(pipe.execute())

    f1 = GaugeMetricFamily(
        "lsml_live_f1",
        "Mean item F1 of each version's answers against the annotations made on them (the control's verifier).",
        labels=["project", "model_version"],
    )
    annotations = GaugeMetricFamily(
        "lsml_live_annotations",
        "Annotations scored against each version's answers.",
        labels=["project", "model_version"],
    )
    flagged = GaugeMetricFamily(
        "lsml_live_regression",
        "1 when a version's live F1 over its first N annotations is below its parent's by more than noise.",
        labels=["project", "model_version"],
    )
    spend = GaugeMetricFamily(
        "lsml_project_spend_today", "LLM spend of the project today (UTC), USD.", labels=["project", "role", "profile"]
    )
    tokens = GaugeMetricFamily(
        "lsml_project_tokens_today",
        "LLM tokens of the project today (UTC).",
        labels=["project", "role", "profile", "kind"],
    )
    limit = GaugeMetricFamily(
        "lsml_project_daily_spend_limit", "The project's daily_spend_limit, USD.", labels=["project"]
    )
    for i, project in enumerate(projects):
        figures = []
        for version in versions[project]:
            n, r, r2, wn, wr, wr2 = (int(x or 0) for x in next(moments))
            figures.append((version, Moments(n, r, r2), Moments(wn, wr, wr2)))
            if n:
                f1.add_metric([project, version], r / 1_000_000 / n)
            annotations.add_metric([project, version], n)
        for (parent, before, _), (version, _, window) in itertools.pairwise(figures):
            flagged.add_metric([project, version], float(live_gate(version, window, parent, before, first_n).flagged))
        for row in rows(replies[3 * i + 1]):
            spend.add_metric([project, row.role, row.profile], row.cost)
            tokens.add_metric([project, row.role, row.profile, "prompt"], row.prompt_tokens)
            tokens.add_metric([project, row.role, row.profile, "completion"], row.completion_tokens)
        chosen = _limit(replies[3 * i + 2])
        if chosen is not None:
            limit.add_metric([project], chosen)
    return [f1, annotations, flagged, spend, tokens, limit]


def _limit(raw) -> float | None:
    try:
        value = json.loads(text(raw)).get("daily_spend_limit") if raw else None
    except (ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
