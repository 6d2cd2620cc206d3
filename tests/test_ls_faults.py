"""Label Studio failing in the middle of a bulk pre-annotation run and of a training job.

What Label Studio ends up holding is the test: after the fault and the retry (or the re-run), every task holds
exactly one prediction of the live version, and the live policy is either the old one or the promoted one, never a
mix. The dangerous faults are the ones after Label Studio committed an import (a 500 from a proxy after the commit,
a connection cut before the answer): a blind retry stores every prediction twice.
"""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from optimizer.jobs.bulk import run_chunk
from optimizer.jobs.errors import JobError
from optimizer.jobs.training import train_project
from optimizer.runtime.services import Services
from optimizer.runtime.versions import policy_version
from testkit.constants import SUPPORT_CONFIG
from testkit.fakellm import FakeLLM
from testkit.fakels import FakeLabelStudio, PostFault
from testkit.lspayloads import uid
from testkit.processes import wait_for
from testkit.training_stack import gold_tasks, magic_responder

PROJECT = uid(1)
UNLABELLED = [{k: v for k, v in t.items() if k != "annotations"} for t in gold_tasks(0, 8)]


def per_task(ls: FakeLabelStudio, version: str) -> Counter:
    """Predictions of the policy ``version`` per task (the served version adds this config's and model's parts)."""
    return Counter(p["task"] for p in ls.predictions() if policy_version(p["model_version"]) == version and p["result"])


@pytest.fixture
def chunk(make_settings):
    """``chunk() -> (services, ls, run)``: a scripted Label Studio and an in-process bulk chunk over its tasks."""
    opened = []

    def build(**overrides):
        llm = FakeLLM(magic_responder).start()
        ls = FakeLabelStudio(SUPPORT_CONFIG, UNLABELLED).__enter__()
        opened.append((llm, ls))
        settings = make_settings(llm_base_url=llm.base_url, label_studio_url=ls.url,
                                 label_studio_api_key=ls.token, **overrides)  # fmt: skip
        services = Services(settings)
        version = services.store.current(PROJECT).version
        ids = [t["id"] for t in UNLABELLED]

        def run(holder="h1"):
            return run_chunk(services, PROJECT, version, ids, holder)

        return services, ls, version, run

    yield build
    for llm, ls in opened:
        ls.__exit__()
        llm.stop()


@pytest.mark.parametrize("fault", [PostFault.STORE_THEN_500, PostFault.STORE_THEN_DROP])
def test_an_import_that_failed_after_the_commit_is_not_posted_again(chunk, fault):
    _, ls, version, run = chunk()
    ls.post_faults.append(fault)
    result = run()
    assert per_task(ls, version) == Counter({t["id"]: 1 for t in UNLABELLED}), "every task exactly once"
    assert result.outcomes["posted"] == len(UNLABELLED) and result.failures == {}
    assert ls.imports == 1, "Label Studio already held them: nothing was sent again"


def test_a_rejected_import_is_retried_and_lands_once(chunk):
    _, ls, version, run = chunk()
    ls.post_faults.extend([PostFault.REJECT, PostFault.REJECT])
    result = run()
    assert per_task(ls, version) == Counter({t["id"]: 1 for t in UNLABELLED})
    assert result.outcomes["posted"] == len(UNLABELLED) and ls.imports == 3 and result.post_retries == 2


def test_label_studio_failing_on_every_import_fails_the_tasks_readably_and_retryably_and_a_rerun_posts_once(chunk):
    _, ls, version, run = chunk()
    ls.post_faults.extend([PostFault.REJECT] * 10)
    result = run()
    assert set(result.failures) == {t["id"] for t in UNLABELLED} and result.outcomes["posted"] == 0
    (failure,) = set(result.failures.values())
    assert failure.reason == "label_studio" and failure.retryable, failure
    assert "importing" in failure.detail and "HTTP 500" in failure.detail
    assert f"{len(UNLABELLED)} predictions" in failure.detail
    assert per_task(ls, version) == Counter()
    ls.post_faults.clear()
    again = run("h2")  # the claims were released with the failure: the next attempt takes the tasks at once
    assert again.outcomes["posted"] == len(UNLABELLED) and again.failures == {}
    assert per_task(ls, version) == Counter({t["id"]: 1 for t in UNLABELLED})


def test_label_studio_refusing_the_key_is_a_failure_no_retry_can_fix(chunk):
    _, ls, _, run = chunk()
    ls.token = "another-token-0123456789"  # the backend's key is refused from now on: 401
    result = run()
    assert set(result.failures) == {t["id"] for t in UNLABELLED}
    assert {(f.reason, f.retryable) for f in result.failures.values()} == {("label_studio", False)}
    assert "HTTP 401" in next(iter(result.failures.values())).detail and ls.imports == 0


def test_label_studio_going_away_mid_chunk_fails_it_and_a_rerun_finishes_without_duplicates(chunk):
    services, ls, version, run = chunk()
    gate, predicting = threading.Event(), threading.Event()
    real = services.predictor_for

    def slow_predictor(labeller):
        predictor = real(labeller)
        predict_many = predictor.predict_many

        def wait_then_predict(*args, **kwargs):
            predicting.set()
            gate.wait(10)  # Label Studio goes down after the chunk read its tasks, before it posts
            return predict_many(*args, **kwargs)

        predictor.predict_many = wait_then_predict
        return predictor

    services.predictor_for = slow_predictor
    results = []
    thread = threading.Thread(target=lambda: results.append(run()))
    thread.start()
    assert predicting.wait(30), "the chunk never got to predicting"
    ls.go_down()
    gate.set()
    thread.join(60)
    (result,) = results
    assert set(result.failures) == {t["id"] for t in UNLABELLED}, "the chunk must fail its tasks, not report success"
    details = {(f.detail, f.retryable) for f in result.failures.values()}
    assert all("is LABEL_STUDIO_URL right and Label Studio running?" in d and retry for d, retry in details), details
    ls.come_back()
    services.predictor_for = real
    again = run("h2")
    assert again.outcomes["posted"] == len(UNLABELLED)
    assert per_task(ls, version) == Counter({t["id"]: 1 for t in UNLABELLED})


def test_label_studio_failing_in_the_middle_of_a_training_listing_fails_the_run_and_promotes_nothing(make_settings):
    llm = FakeLLM(magic_responder).start()
    with FakeLabelStudio(SUPPORT_CONFIG, gold_tasks()) as ls:
        ls.max_page_size, ls.fail_from_page = 5, 2  # page 1 of 3 reads fine, then Label Studio answers 500
        settings = make_settings(llm_base_url=llm.base_url, label_studio_url=ls.url, label_studio_api_key=ls.token)
        services = Services(settings)
        before = services.store.current(PROJECT).version
        with pytest.raises(JobError) as failed:
            train_project(services, PROJECT, "train-ls-500", lambda **_: None)
        assert "listing tasks of project 1 failed: HTTP 500" in str(failed.value)
        assert llm.requests == [], "no LLM budget is spent on a half-read project"
        assert services.store.current(PROJECT).version == before
        assert services.history.promotions(PROJECT) == []
    llm.stop()


@pytest.mark.slow
def test_label_studio_refusing_imports_after_a_promotion_keeps_the_promotion_whole_and_a_rerun_posts_once(stack):
    """The promotion is Redis's alone, so it lands whole; the re-prediction it queues ends with its tasks failed,
    each with a readable reason, while Label Studio refuses imports (no retries here), and the next run posts each
    task exactly once."""
    s = stack(repredict_after_promote=True, bulk_chunk=2, bulk_retries=0)
    v1 = s.setup_version()
    s.ls.post_faults.extend([PostFault.REJECT] * 20)
    s.start_worker()
    view = s.wait_job(s.webhook("START_TRAINING")["job"])
    assert view["status"] == "finished" and view["result"]["promoted"], view
    v2 = view["result"]["live_after"]
    assert v2 != policy_version(v1) and policy_version(s.setup_version()) == v2
    assert s.services.history.promotions(s.project)[-1]["version"] == v2
    repredict = s.wait_job(view["result"]["repredict_job"])
    assert repredict["status"] == "finished with 3 failed" and repredict["state"] == "finished", repredict
    assert repredict["progress"]["tasks"] == {"skipped": 12, "failed_label_studio": 3}
    failures = repredict["progress"]["failures"]
    assert [f["task"] for f in failures] == [13, 14, 15]
    assert all("HTTP 500" in f["detail"] and "while posting" in f["detail"] for f in failures), failures
    assert s.ls.predictions() == []
    s.ls.post_faults.clear()
    rerun = s.session.post(s.url + "/projects/1/predict", json={}, timeout=10)
    assert rerun.status_code == 202, rerun.text
    s.wait_job(rerun.json()["job"])  # an API run covers every task lacking the version, annotated ones too
    wait_for(lambda: len(s.ls.predictions()) == 15, 60, what="every task to be posted")
    assert per_task(s.ls, v2) == Counter(range(1, 16))
