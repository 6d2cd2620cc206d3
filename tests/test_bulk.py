"""Bulk pre-annotation with real RQ worker processes, real Redis, the scripted LLM and a scripted Label Studio.

What Label Studio ends up holding is the test: every task exactly one prediction of the current version, whatever
was re-run, raced or killed on the way.
"""

from __future__ import annotations

from collections import Counter

import pytest

from testkit.processes import kill_tree, wait_for
from testkit.training_stack import gold_tasks

pytestmark = pytest.mark.slow


def predictions_per_task(s, version: str) -> Counter:
    return Counter(p["task"] for p in s.ls.predictions() if p["model_version"] == version and p["result"])


def queue(s, body=None):
    answer = s.session.post(s.url + "/projects/1/predict", json=body, timeout=10)
    assert answer.status_code == 202, answer.text
    return answer.json()


def test_api_run_posts_every_task_once_and_a_rerun_posts_nothing(stack):
    s = stack(bulk_chunk=4)
    version = s.setup_version()
    refused = s.session.post(s.url + "/projects/1/predict", json={"tasks": ["x"]}, timeout=10)
    assert refused.status_code == 400 and refused.json()["field"] == "tasks[0]"
    s.start_worker("a")
    s.start_worker("b")
    first = s.wait_job(queue(s)["job"])
    assert first["status"] == "finished", first
    assert first["progress"]["tasks"] == {"posted": 15} and first["progress"]["chunks"] == 4
    assert predictions_per_task(s, version) == Counter(range(1, 16))
    # Two runs at once, and a run of named tasks: all already there, nothing posted again.
    again = [queue(s)["job"], queue(s, {"tasks": [2, 3, 99]})["job"]]
    views = [s.wait_job(job) for job in again]
    assert views[0]["progress"]["tasks"] == {"skipped": 15}
    assert views[1]["progress"]["tasks"] == {"skipped": 2, "missing": 1}
    assert predictions_per_task(s, version) == Counter(range(1, 16))
    metrics = s.session.get(s.url + "/metrics", timeout=10).text
    assert f'lsml_bulk_tasks_total{{outcome="posted",project="{s.project}"}} 15.0' in metrics


def test_sigkilled_worker_mid_run_and_the_next_run_completes_without_duplicates(stack):
    s = stack(bulk_chunk=5, bulk_claim_ttl=2.0)
    s.llm.delay = 0.4
    version = s.setup_version()
    worker = s.start_worker("doomed")
    job = queue(s)["job"]
    wait_for(lambda: len(s.llm.requests) >= 3, 30, what="the first chunk to be predicting")
    kill_tree(worker.pid)  # SIGKILL the worker and its work horse in the middle of a chunk
    assert len(predictions_per_task(s, version)) < 15
    s.llm.delay = 0.0
    s.start_worker("replacement")
    rerun = s.wait_job(queue(s)["job"], timeout=90)
    assert rerun["status"] == "finished", rerun
    wait_for(lambda: len(predictions_per_task(s, version)) == 15, 60, what="every task to be posted")
    assert predictions_per_task(s, version) == Counter(range(1, 16))  # each exactly once
    killed = s.job(job)
    assert killed["status"] in ("started", "failed", "finished"), killed


def test_predict_past_the_sync_limit_answers_the_first_tasks_and_queues_the_rest(stack):
    tasks = [{k: v for k, v in t.items() if k != "annotations"} for t in gold_tasks(0, 10)]
    s = stack(tasks=tasks, predict_sync_max=4)
    version = s.setup_version()
    s.start_worker()
    body = {"tasks": tasks, "label_config": s.label_config, "project": s.project}
    answer = s.session.post(s.url + "/predict", json=body, timeout=30).json()["results"]
    assert [bool(r) for r in answer] == [True] * 4 + [False] * 6
    assert all(r == [] for r in answer[4:])  # no placeholder: Label Studio stores nothing for these
    wait_for(lambda: len(predictions_per_task(s, version)) == 6, 60, what="the queued tasks to be posted")
    assert predictions_per_task(s, version) == Counter(range(5, 11))
    metrics = s.session.get(s.url + "/metrics", timeout=10).text
    assert f'lsml_prediction_failures_total{{project="{s.project}",reason="queued"}} 6.0' in metrics


def test_the_llm_limit_holds_across_two_web_and_two_rq_workers(stack):
    from concurrent.futures import ThreadPoolExecutor

    tasks = [{k: v for k, v in t.items() if k != "annotations"} for t in gold_tasks(0, 40)]
    s = stack(tasks=tasks, web_workers=2, llm_global_concurrency=3, llm_concurrency=8, bulk_chunk=10)
    s.llm.delay = 0.1
    s.setup_version()
    s.start_worker("a")
    s.start_worker("b")
    job = queue(s)["job"]
    body = {"tasks": tasks[:8], "label_config": s.label_config, "project": s.project}

    def predict(_):
        return s.session.post(s.url + "/predict", json=body, timeout=60).status_code

    with ThreadPoolExecutor(4) as pool:  # meanwhile annotators' batches reach both gunicorn workers
        assert set(pool.map(predict, range(8))) == {200}
    assert s.wait_job(job, timeout=120)["progress"]["tasks"]["posted"] == 40
    assert s.llm.max_active == 3  # saturated, and never more: 2 web + 2 RQ processes, 8 threads each
