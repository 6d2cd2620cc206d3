"""Retraining with a real RQ worker process, real Redis, a scripted LLM and a scripted Label Studio over HTTP."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from optimizer.runtime.versions import policy_version
from testkit.processes import kill_tree, wait_for
from testkit.training_stack import MAGIC_WORD, Stack, gold_tasks

pytestmark = pytest.mark.slow


def test_start_training_promotes_a_better_policy_and_every_route_serves_it(stack):
    s = stack()
    v1 = policy_version(s.setup_version())
    s.start_worker()
    answer = s.webhook("START_TRAINING")
    view = s.wait_job(answer["job"])
    assert view["status"] == "finished", view
    result = view["result"]
    assert result["promoted"] is True and result["live_before"] == v1, result
    v2 = result["live_after"]
    assert v2 != v1 and policy_version(s.setup_version()) == v2
    assert MAGIC_WORD in s.services.store.current(s.project).instruction
    assert view["meta"]["phase"] == "done" and view["meta"]["gold"]["used"] == 12
    listing = s.session.get(s.url + "/projects/1/policies").json()
    assert listing["live"] == v2
    # /metrics (read from Redis) sees the job, the promotion and the worker's LLM calls for both roles.
    metrics = s.session.get(s.url + "/metrics").text
    assert f'lsml_policy_promotions_total{{project="{s.project}"}} 1.0' in metrics
    assert f'lsml_jobs{{queue="{s.settings.rq_queue}",state="succeeded"}} 1.0' in metrics
    assert re.search(r'lsml_llm_calls_total\{role="proposer",source="worker"\} [1-9]', metrics), metrics
    assert re.search(r'lsml_llm_calls_total\{role="labeller",source="worker"\} [1-9]', metrics), metrics
    assert next(p for p in listing["policies"] if p["version"] == v2)["job"] == answer["job"]


def test_fifty_parallel_start_trainings_give_one_run_and_one_followup(stack):
    s = stack()
    s.setup_version()
    s.ls.hold = threading.Event()  # the run stays inside Label Studio's task listing until released
    s.start_worker()

    def burst():
        with ThreadPoolExecutor(50) as pool:
            return list(pool.map(lambda _: s.webhook("START_TRAINING"), range(50)))

    first = burst()
    wait_for(lambda: s.ls.listings >= 1, 30, what="the first run to start")
    state = s.services.coalescer.status(s.project)
    assert state["running"] is not None
    second = burst()  # all of these arrive while the run is in progress
    ids = {a["job"] for a in first + second}
    assert len(ids) <= 2, ids
    followup = {a["job"] for a in second}
    assert len(followup) == 1 and state["running"] not in followup
    assert s.services.coalescer.status(s.project)["followup"] == next(iter(followup))
    time.sleep(1.0)
    assert s.ls.listings == 1  # the follow-up did not start while the first run holds the project
    s.ls.hold.set()
    final = s.wait_job(next(iter(followup)), timeout=60)
    assert final["status"] == "finished", final
    wait_for(s.idle, 10, what="the project to go idle")
    assert s.ls.listings == 2  # exactly two runs: the first and the single coalesced follow-up


def test_failed_job_reports_a_readable_reason_and_keeps_the_live_policy(stack):
    s = stack()
    v1 = s.setup_version()
    s.ls.fail_tasks = 500
    s.start_worker()
    answer = s.webhook("START_TRAINING")
    view = s.wait_job(answer["job"])
    assert view["status"] == "failed"
    assert "listing tasks of project 1 failed: HTTP 500" in view["error"]
    assert s.setup_version() == v1
    # Too little gold is a failure with a reason too, not a promotion from noise.
    s.ls.fail_tasks = None
    s.ls.tasks = gold_tasks(n=2, unlabelled=1)
    view = s.wait_job(s.webhook("START_TRAINING")["job"])
    assert view["status"] == "failed" and "TRAIN_MIN_GOLD" in view["error"]
    assert s.setup_version() == v1


def test_wrong_label_studio_key_fails_readably_without_echoing_it(stack):
    s = stack(label_studio_api_key="wrong-key-0123456789")
    s.start_worker()
    view = s.wait_job(s.webhook("START_TRAINING")["job"])
    assert view["status"] == "failed" and "HTTP 401" in view["error"] and "LABEL_STUDIO_API_KEY" in view["error"]
    assert "wrong-key-0123456789" not in view["error"]


def run_with_followup(s: Stack):
    """Start a worker and a run held inside Label Studio's task listing, plus one trigger coalesced behind it.

    Returns (version before, worker, running job id, follow-up job id).
    """
    v1 = s.setup_version()
    s.ls.hold = threading.Event()
    worker = s.start_worker()
    first = s.webhook("START_TRAINING")["job"]
    wait_for(lambda: s.ls.listings >= 1, 30, what="the run to start")
    follow = s.webhook("START_TRAINING")["job"]
    assert follow != first
    s.work_horse(worker)
    return v1, worker, first, follow


def test_sigkilled_worker_leaves_no_half_promotion_and_the_next_trigger_runs(stack):
    s = stack()
    v1, worker, _, follow = run_with_followup(s)
    kill_tree(worker.pid)  # SIGKILL the worker and its work horse mid-run, as when a machine dies
    history_before = s.services.history.promotions(s.project)
    assert s.setup_version() == v1 and history_before == []
    s.ls.hold.set()
    # The killed run's lease expires (TRAIN_LEASE_TTL=2 s); until then the project is still taken.
    wait_for(lambda: s.services.coalescer.status(s.project)["running"] is None, 10, what="the lease to expire")
    assert s.setup_version() == v1 and s.services.history.promotions(s.project) == []
    s.start_worker("replacement")
    nxt = s.webhook("START_TRAINING")
    assert nxt["job"] == follow  # the trigger that waited on the dead run is served, not lost or duplicated
    view = s.wait_job(follow)
    assert view["status"] == "finished" and view["result"]["promoted"], view
    assert policy_version(s.setup_version()) == view["result"]["live_after"] != policy_version(v1)


def test_repredict_after_promotion_is_a_bulk_run_posting_in_chunks(stack):
    s = stack(repredict_after_promote=True, bulk_chunk=2)
    s.setup_version()
    s.start_worker()
    view = s.wait_job(s.webhook("START_TRAINING")["job"])
    assert view["status"] == "finished" and view["result"]["promoted"], view
    v2 = view["result"]["live_after"]
    served = s.setup_version()  # what Label Studio asks for: the new policy with this config and model
    assert policy_version(served) == v2
    repredict = s.wait_job(view["result"]["repredict_job"])
    assert repredict["status"] == "finished" and repredict["kind"] == "bulk", repredict.get("progress")
    assert repredict["result"] == {"status": "planned", "version": v2, "served": served, "total": 3, "chunks": 2}
    assert repredict["progress"]["tasks"] == {"posted": 3, "skipped": 12}  # the 12 annotated tasks are left alone
    posted = s.ls.predictions()
    assert len(posted) == 3 and {p["model_version"] for p in posted} == {served}
    assert {p["task"] for p in posted} == {13, 14, 15}  # only the unlabelled tasks
    assert all(p["result"][0]["value"]["choices"] for p in posted)


def test_killed_work_horse_frees_the_project_at_once_and_the_followup_runs(stack):
    s = stack(train_lease_ttl=60.0)  # a long lease: only the worker's own handling can free the project in time
    v1, worker, first, follow = run_with_followup(s)
    os.kill(s.work_horse(worker), signal.SIGKILL)  # the OOM killer takes the job's process; the worker survives
    dead = s.wait_job(first, timeout=30, states=("failed",))
    assert "died" in dead["error"] and s.setup_version() == v1
    s.ls.hold.set()
    view = s.wait_job(follow, timeout=60)
    assert view["status"] == "finished" and view["result"]["promoted"], view


def test_a_training_run_cancelled_from_the_cli_stops_at_its_next_step_and_promotes_nothing(stack):
    s = stack()
    v1 = s.setup_version()
    s.llm.delay = 0.3  # every optimiser step takes seconds: the cancel lands mid-run
    s.start_worker()
    job = s.webhook("START_TRAINING")["job"]
    wait_for(lambda: s.job(job)["meta"].get("phase") == "optimizing", 60, what="the optimiser to start")
    cli = subprocess.run([sys.executable, "-m", "optimizer", "jobs", "cancel", job], env=s.backend.env,
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout)["cancelled_by"]["by"] == "cli"
    view = s.wait_job(job, timeout=60)
    assert view["status"] == view["state"] == "cancelled", view
    result = view["result"]
    assert result["status"] == "cancelled" and result["promoted"] is False and result["cancelled_by"]["by"] == "cli"
    assert result["calls"] == view["meta"]["optimizer"]["calls"] > 0  # the calls done so far: it stopped mid-run
    assert s.setup_version() == v1 and s.services.history.promotions(s.project) == []  # nothing promoted
    assert s.services.store.current(s.project).version == policy_version(v1)
    again = s.session.post(f"{s.url}/jobs/{job}/cancel", timeout=10)
    assert again.status_code == 409 and "already cancelled" in again.json()["error"]
    # The project was released: the next run trains and promotes as usual.
    s.llm.delay = 0.0
    wait_for(s.idle, 10, what="the project to go idle")
    nxt = s.wait_job(s.webhook("START_TRAINING")["job"], timeout=90)
    assert nxt["result"]["promoted"] and policy_version(s.setup_version()) == nxt["result"]["live_after"]
    assert nxt["result"]["live_after"] != policy_version(v1)
