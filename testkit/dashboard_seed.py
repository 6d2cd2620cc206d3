"""A project seeded for the dashboard tests: two versions promoted by two real training runs.

Both runs go the way production runs go: a trigger through the job queue, the real ``optimizer.jobs.functions.train``
inside an RQ worker, annotations from a fake Label Studio over HTTP, the optimiser's loop against the scripted LLM
(:class:`testkit.staged.StagedResponder`), and the store's compare-and-set promotion. Only the worker is
RQ's in-process ``SimpleWorker`` (no fork), so the in-process tests need no extra processes.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from rq import SimpleWorker

from optimizer.jobs.queue import JobQueue
from testkit.lspayloads import uid
from testkit.staged import N_GOLD, StagedResponder
from testkit.training_stack import gold_tasks

PROJECT = uid(1)


def seed_tasks() -> list[dict]:
    return gold_tasks(n=N_GOLD, unlabelled=3)


def job_env(settings) -> dict[str, str]:
    """What the job's ``load_settings()`` must read to reach the same Redis, LLM and Label Studio as ``settings``."""
    names = (
        "redis_url", "redis_namespace", "llm_base_url", "llm_model", "llm_provider", "rq_queue", "default_prompt",
        "label_studio_url", "optimize_budget", "log_format", "llm_concurrency",
    )  # fmt: skip
    env = {name.upper(): str(getattr(settings, name)) for name in names}
    env["LABEL_STUDIO_API_KEY"] = settings.label_studio_api_key.get_secret_value()
    return env


@dataclass
class Seeded:
    services: object
    responder: StagedResponder
    first_job: str
    second_job: str
    versions: list[str]  # default, first promotion, second promotion


def run_in_process(services, monkeypatch: pytest.MonkeyPatch) -> str:
    """Trigger a run and let an in-process RQ worker execute it; returns the job id."""
    for name, value in job_env(services.settings).items():
        monkeypatch.setenv(name, value)
    decision = JobQueue(services).trigger(PROJECT, reason="test")
    assert decision.job, decision
    SimpleWorker([services.settings.rq_queue], connection=services.rq_redis).work(burst=True)
    view = JobQueue(services).view(decision.job)
    assert view is not None and view.status == "finished" and view.summary and view.summary.promoted, view
    return decision.job


def seed(services, responder: StagedResponder, monkeypatch: pytest.MonkeyPatch) -> Seeded:
    default = services.store.current_version(PROJECT)
    responder.stage = 1
    first = run_in_process(services, monkeypatch)
    middle = services.store.current_version(PROJECT)
    responder.stage = 2
    second = run_in_process(services, monkeypatch)
    last = services.store.current_version(PROJECT)
    assert len({default, middle, last}) == 3
    return Seeded(services, responder, first, second, [default, middle, last])
