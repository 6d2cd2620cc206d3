"""One training run in-process (``train_project``), with real Redis, the real optimiser loop, the scripted LLM and LS.

What the worker tests cover end to end is checked here case by case and faster: where the starting prompt comes
from, what is promoted, what is only recorded, and that the live policy is touched only by an accepted candidate.
"""

from __future__ import annotations

import copy

import pytest

from optimizer.jobs.errors import JobError
from optimizer.jobs.training import most_typed_prompt, train_project
from optimizer.learning.gold import GoldItem
from optimizer.learning.procedure import optimize
from optimizer.runtime.services import Services
from optimizer.serving.policy import Policy
from testkit.constants import SUPPORT_CONFIG
from testkit.fakellm import FakeLLM, Reply
from testkit.fakels import FakeLabelStudio
from testkit.lspayloads import uid
from testkit.training_stack import MAGIC_WORD, gold_tasks, magic_responder

PROJECT = uid(1)
TYPED = "Tag the customer's intent."


def with_typed_prompt(tasks: list[dict], prompt: str) -> list[dict]:
    tasks = copy.deepcopy(tasks)
    for task in tasks:
        for annotation in task.get("annotations", []):
            annotation["result"].append(
                {"from_name": "prompt", "to_name": "chat", "type": "textarea", "value": {"text": [prompt]}}
            )
    return tasks


@pytest.fixture
def run(make_settings):
    started = []

    def build(tasks=None, responder=magic_responder, **overrides):
        llm = FakeLLM(responder).start()
        ls = FakeLabelStudio(SUPPORT_CONFIG, tasks if tasks is not None else gold_tasks()).__enter__()
        started.append((llm, ls))
        values = {"llm_base_url": llm.base_url, "label_studio_url": ls.url, "label_studio_api_key": ls.token}
        settings = make_settings(**{**values, **overrides})
        services = Services(settings)
        services.store.current(PROJECT)
        events = []

        def train(**kwargs):
            return train_project(services, PROJECT, "train-test", lambda **f: events.append(f), **kwargs).to_dict()

        return services, train, llm, events

    yield build
    for llm, ls in started:
        ls.__exit__()
        llm.stop()


def test_typed_prompt_is_the_most_common_then_the_latest():
    items = [GoldItem(str(i), "x", {}, prompt=p) for i, p in enumerate(["a", "b", "a", None, "b", "c"])]
    assert most_typed_prompt(items) == "b"  # a and b tie at two; b was typed later
    assert most_typed_prompt([GoldItem("1", "x", {})]) is None


def test_default_policy_starts_from_the_typed_prompt(run):
    services, train, _, events = run(with_typed_prompt(gold_tasks(), TYPED))
    summary = train()
    assert summary["seeded_from"] == "typed prompt"
    assert summary["start"] == Policy(TYPED).version
    assert summary["promoted"] is True and summary["live_before"] == services.default_policy.version
    live = services.store.current(PROJECT)
    assert MAGIC_WORD in live.instruction and live.version == summary["live_after"]
    phases = [e["phase"] for e in events if "phase" in e]
    assert phases[0] == "fetching annotations" and "optimizing" in phases and phases[-1] == "promoting"
    assert any("optimizer" in e for e in events)  # the loop's own progress reaches the job's meta


def test_a_trained_policy_is_the_start_even_when_a_prompt_was_typed(run):
    services, train, _, _ = run(with_typed_prompt(gold_tasks(), TYPED))
    trained = Policy("An earlier trained instruction.")
    assert services.store.promote(PROJECT, trained, services.default_policy.version, job="old").ok
    summary = train()
    assert summary["seeded_from"] == "live policy" and summary["start"] == trained.version
    assert summary["promoted"] and summary["live_before"] == trained.version


def test_worse_proposals_are_recorded_but_never_promoted(run):
    def worse(body):
        if "Current instruction" in str(body.get("messages")):
            return Reply("Always answer Other whatever the customer says.")
        return magic_responder(body)

    services, train, _, _ = run(responder=worse)
    before = services.store.current(PROJECT).version
    summary = train()
    assert summary["promoted"] is False and summary["status"] == "rejected"
    assert services.store.current(PROJECT).version == before
    assert services.history.promotions(PROJECT) == []


def test_live_policy_changed_during_the_run_refuses_the_stale_promotion(run):
    services, train, _, _ = run()
    rollback_target = Policy("A person's choice while the job ran.")

    def optimize_while_someone_promotes(*args, **kwargs):
        result = optimize(*args, **kwargs)
        assert services.store.promote(PROJECT, rollback_target, None, force=True, source="rollback").ok
        return result

    summary = train(optimize=optimize_while_someone_promotes)
    assert summary["accepted"] and summary["promoted"] is False and summary["status"] == "stale"
    assert services.store.current(PROJECT).version == rollback_target.version
    recorded = {e.version: e.record for e in services.history.entries(PROJECT)}
    assert recorded[summary["candidate"]]["status"] == "stale"  # kept for a person to look at


def test_pinned_project_is_skipped_without_calling_the_llm(run):
    services, train, llm, _ = run()
    services.history.pin(PROJECT)
    summary = train()
    assert summary == {"promoted": False, "status": "skipped", "reason": "project is pinned; unpin it to train"}
    assert llm.requests == []


def test_cancelled_and_empty_annotations_are_not_gold(run):
    tasks = gold_tasks(n=10, unlabelled=0)
    tasks[0]["annotations"][0]["was_cancelled"] = True
    tasks[1]["annotations"][0]["result"] = []
    _, train, _, _ = run(tasks, train_min_gold=8)
    summary = train()
    assert summary["gold"]["used"] == 8 and summary["gold"]["annotated_tasks"] == 10
    assert sum(summary["gold"]["skipped"].values()) == 2


def test_missing_label_studio_settings_fail_with_a_reason(run):
    services, train, _, _ = run(label_studio_url="")
    with pytest.raises(JobError, match="LABEL_STUDIO_URL is not set"):
        train()
    assert services.history.promotions(PROJECT) == []


def test_a_project_key_that_is_not_a_label_studio_id_fails(run):
    services, _, _, _ = run()
    with pytest.raises(JobError, match="not a Label Studio project id"):
        train_project(services, "default", "train-x", lambda **f: None)


def test_a_run_that_lost_its_lease_does_not_promote(run):
    services, train, _, _ = run()
    before = services.store.current(PROJECT).version
    summary = train(lease_lost=lambda: True)
    assert summary["accepted"] and summary["promoted"] is False and summary["status"] == "lease lost"
    assert services.store.current(PROJECT).version == before


def test_no_llm_listening_fails_the_run_in_seconds_before_reading_label_studio(run):
    """A training job used to spend its whole budget on connection errors; now it fails with the reason."""
    import time

    from testkit.redisserver import free_port

    url = f"http://127.0.0.1:{free_port()}/v1"
    services, train, _, events = run(llm_base_url=url)
    live = services.store.current(PROJECT).version
    started = time.monotonic()
    with pytest.raises(JobError, match=r"cannot use the LLM at .*LLM_BASE_URL") as failed:
        train()
    assert url in str(failed.value) and time.monotonic() - started < 10
    assert not any(e.get("phase") == "fetching annotations" for e in events)
    assert services.store.current(PROJECT).version == live


def test_an_endpoint_refusing_the_key_fails_the_run_after_the_first_calls(run):
    _, train, llm, _ = run(responder=lambda body: Reply(status=401, error="bad key"))
    with pytest.raises(JobError, match=r"authentication failed \(401\)"):
        train()
    assert len(llm.requests) <= 8  # the first concurrent calls, not the budget
