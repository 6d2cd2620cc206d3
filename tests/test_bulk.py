"""Bulk pre-annotation with real RQ worker processes, real Redis, the scripted LLM and a scripted Label Studio.

What Label Studio ends up holding is the test: every task exactly one prediction of the current version, whatever
was re-run, raced or killed on the way.
"""

from __future__ import annotations

import time
from collections import Counter, deque

import pytest

from testkit.fakellm import Reply, last_user
from testkit.fakels import PostFault
from testkit.processes import kill_tree, wait_for
from testkit.training_stack import gold_tasks, magic_responder

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
    kill_tree(worker.pid)  # SIGKILL the worker in the middle of its chunks (they run in its threads)
    # Reaped before anything new is queued: a worker killed while Redis still holds its blocked dequeue would be
    # handed the next job (RQ re-queues it from the intermediate list only after a minute).
    worker.proc.wait(10)
    time.sleep(0.5)
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


def unlabelled(n: int) -> list[dict]:
    return [{k: v for k, v in t.items() if k != "annotations"} for t in gold_tasks(0, n)]


def test_training_goes_first_and_each_queue_has_its_own_workers(stack):
    """Queues apart: a worker for both takes a training run before a bulk run queued earlier; a bulk-only worker
    never takes a training run, and a training-only worker never takes a chunk."""
    s = stack(bulk_chunk=3)
    s.setup_version()
    run = queue(s)["job"]  # the plan waits: no worker yet
    train = s.webhook("START_TRAINING")["job"]
    bulk_only = s.start_worker("bulk", queues="bulk")
    assert s.wait_job(run, timeout=60)["status"] == "finished"
    assert s.job(train)["state"] == "queued"  # the bulk-only worker left it alone
    s.start_worker("train", queues="train")
    trained = s.wait_job(train, timeout=90)
    assert trained["status"] == "finished", trained
    from rq.job import Job

    assert Job.fetch(train, connection=s.services.rq_redis).worker_name.startswith("train-1")
    chunks = [Job.fetch(f"{run}-{n}", connection=s.services.rq_redis) for n in range(5)]
    assert {job.worker_name.split("-")[0] for job in chunks} == {"bulk"}
    bulk_only.stop()  # warm: a SIGKILLed single-queue worker can strand the job it was handed for RQ's minute
    # One worker for both queues, a bulk run queued before a training run: training starts first.
    second = queue(s, {"tasks": [1, 2, 3]})["job"]
    followup = s.webhook("START_TRAINING")["job"]
    s.start_worker("both")
    views = [s.wait_job(followup, timeout=90), s.wait_job(second, timeout=60)]
    assert views[0]["started_at"] < views[1]["started_at"], views


def test_a_refused_import_is_retried_by_rq_and_every_task_lands_once(stack):
    s = stack(tasks=unlabelled(15), bulk_chunk=5, bulk_retry_backoff=1)
    version = s.setup_version()
    s.ls.task_faults[8] = deque([PostFault.REJECT] * 3)  # all three of the chunk's own attempts at posting
    s.start_worker()
    view = s.wait_job(queue(s)["job"], timeout=90)
    assert view["status"] == "finished" and view["progress"]["tasks"] == {"posted": 15}, view
    assert predictions_per_task(s, version) == Counter(range(1, 16))
    assert s.ls.imports == 3 + 1 + 2  # the failed chunk: 3 refused, 1 after RQ's retry; the others: 1 each
    from rq.job import Job

    retried = Job.fetch(f"{view['id']}-1", connection=s.services.rq_redis)
    assert retried.retries_left == s.settings.bulk_retries - 1 and retried.meta["remaining"] == [6, 7, 8, 9, 10]


def test_tasks_that_still_fail_end_visible_with_their_reason(stack):
    """An LLM that keeps failing one task is retried until the cap; an answer with no valid label is not retried at
    all. The run says how many failed, and why, instead of ``finished``."""
    s = stack(tasks=unlabelled(6), bulk_chunk=3, bulk_retries=1, bulk_retry_backoff=1, llm_max_retries=0)
    version = s.setup_version()

    def responder(body):
        text = last_user(body)
        if "#3" in text:
            return Reply(status=503)  # an outage that outlasts the retries
        if "#4" in text:
            return Reply("I cannot tell.")  # no label: retrying gives the same answer
        return magic_responder(body)

    s.llm.responder = responder
    s.start_worker()
    view = s.wait_job(queue(s)["job"], timeout=90)
    assert view["status"] == "finished with 2 failed" and view["state"] == "finished", view
    assert view["progress"]["tasks"] == {"posted": 4, "failed_llm": 1, "failed_unparsable": 1}
    failures = {f["task"]: f for f in view["progress"]["failures"]}
    assert failures[4]["reason"] == "llm" and "503" in failures[4]["detail"]
    assert failures[5]["reason"] == "unparsable"
    asked = Counter(last_user(body).split("#")[-1].split()[0] for body in s.llm.requests)
    assert asked["3"] == 2 and asked["4"] == 1  # the outage: first attempt and one retry; the unparsable: once
    assert set(predictions_per_task(s, version)) == {1, 2, 3, 6}


def test_a_cancelled_run_stops_posting_within_a_chunk_and_releases_its_claims(stack):
    s = stack(tasks=unlabelled(45), bulk_chunk=3)
    s.llm.delay = 0.3
    version = s.setup_version()
    s.start_worker()
    job = queue(s)["job"]
    wait_for(lambda: len(predictions_per_task(s, version)) >= 3, 60, what="the first chunk to be posted")
    answer = s.session.post(f"{s.url}/jobs/{job}/cancel", timeout=10)
    assert answer.status_code == 202 and answer.json()["cancelled_by"]["by"] == "admin", answer.text
    at_cancel = len(predictions_per_task(s, version))
    view = s.wait_job(job, timeout=60)
    assert view["status"] == "cancelled" and view["cancelled_by"]["by"] == "admin", view
    posted = predictions_per_task(s, version)
    # Each of the worker's chunk threads may post the chunk it was in; nothing after that.
    assert len(posted) - at_cancel <= s.settings.bulk_threads * s.settings.bulk_chunk
    assert len(posted) < 45 and max(posted.values()) == 1
    tasks = view["progress"]["tasks"]
    assert tasks["posted"] == len(posted) and tasks["posted"] + tasks["cancelled"] == 45, tasks
    assert s.services.redis.keys(s.services.bulk.keys.bulk_claim(s.project, version, "*")) == []
    time.sleep(1.0)
    assert len(predictions_per_task(s, version)) == len(posted)  # and nothing later
    assert s.session.post(f"{s.url}/jobs/{job}/cancel", timeout=10).status_code == 409


def test_a_single_task_predict_keeps_its_priority_while_a_bulk_run_fills_the_slots(stack):
    """An annotator's one task waits for the next free slot, not behind the bulk run's queued calls (up to 24 of them
    here, at 4 in flight); and gunicorn's start-up line says which limits are in force."""
    tasks = unlabelled(40)
    s = stack(tasks=tasks, llm_global_concurrency=4, bulk_chunk=8)
    s.llm.delay = 0.6  # first in line: one slot's release and its own call, about 1.2 s; behind the bulk run: 3 s
    s.setup_version()
    s.start_worker()
    job = queue(s)["job"]
    wait_for(lambda: s.llm.active >= 4, 60, what="the bulk run to fill the 4 slots")
    body = {"tasks": [tasks[0]], "label_config": s.label_config, "project": s.project}
    started = time.monotonic()
    answer = s.session.post(s.url + "/predict", json=body, timeout=30)
    waited = time.monotonic() - started
    assert answer.status_code == 200 and answer.json()["results"][0]["result"], answer.text
    assert waited < 2.0, f"the single task waited {waited:.1f} s: behind the bulk run's calls"
    assert s.job(job)["state"] in ("started", "queued")  # the bulk run was still going meanwhile
    assert s.llm.max_active == 4  # and the limit held with the annotator's call among them
    log = s.backend.web.log_path.read_text()
    assert "LLM limits: 16 per web process, 4 stack-wide\n" in log  # both set by the test: no default named
