"""The per-project coalescing state machine (Lua in a real Redis): at most one run, at most one follow-up."""

from __future__ import annotations

import threading
import time

from optimizer.state.coalesce import Coalescer


def make(redis_client, namespace) -> Coalescer:
    return Coalescer(redis_client, namespace)


def test_first_trigger_enqueues_and_later_ones_join_the_queued_run(redis_client, namespace):
    c = make(redis_client, namespace)
    first = c.trigger("1.100")
    assert first.status == "queued" and first.job_id
    again = c.trigger("1.100")
    assert again.status == "coalesced" and again.job_id == first.job_id
    assert c.project_of(first.job_id) == "1.100"


def test_trigger_during_a_run_makes_exactly_one_followup(redis_client, namespace):
    c = make(redis_client, namespace)
    run = c.trigger("p").job_id
    assert c.begin("p", run, lease_ttl=30).ok
    followups = {c.trigger("p").job_id for _ in range(5)}
    assert len(followups) == 1 and run not in followups
    assert c.status("p")["followup"] == followups.pop()


def test_finish_hands_the_project_to_the_followup(redis_client, namespace):
    c = make(redis_client, namespace)
    run = c.trigger("p").job_id
    c.begin("p", run, 30)
    follow = c.trigger("p")
    assert follow.status == "followup"
    assert c.finish("p", run) == follow.job_id
    state = c.status("p")
    assert state["running"] is None and state["queued"] == follow.job_id and state["followup"] is None
    # A trigger now joins the queued follow-up instead of creating a third run.
    assert c.trigger("p").job_id == follow.job_id
    assert c.finish("p", run) is None  # a second finish by the old run changes nothing


def test_finish_without_followup_frees_the_project(redis_client, namespace):
    c = make(redis_client, namespace)
    run = c.trigger("p").job_id
    c.begin("p", run, 30)
    assert c.finish("p", run) is None
    nxt = c.trigger("p")
    assert nxt.status == "queued" and nxt.job_id != run


def test_second_runner_cannot_begin_while_the_lease_is_held(redis_client, namespace):
    c = make(redis_client, namespace)
    run = c.trigger("p").job_id
    assert c.begin("p", run, 30).ok
    intruder = c.begin("p", "train-intruder", 30)
    assert not intruder.ok and intruder.followup  # it turned into the (single) follow-up
    assert c.status("p")["running"] == run


def test_expired_lease_frees_project_and_orphaned_followup_is_recovered(redis_client, namespace):
    c = make(redis_client, namespace)
    run = c.trigger("p").job_id
    c.begin("p", run, lease_ttl=1)  # the runner "dies": it never heartbeats or finishes
    follow = c.trigger("p").job_id
    time.sleep(1.2)
    assert c.status("p")["running"] is None
    assert c.orphans() == [("p", follow)]
    assert c.orphans() == []  # handed over once only
    assert c.status("p")["queued"] == follow


def test_next_trigger_after_a_dead_runner_reuses_its_followup(redis_client, namespace):
    c = make(redis_client, namespace)
    run = c.trigger("p").job_id
    c.begin("p", run, lease_ttl=1)
    follow = c.trigger("p").job_id
    time.sleep(1.2)
    nxt = c.trigger("p")
    assert nxt.status == "queued" and nxt.job_id == follow


def test_heartbeat_keeps_the_lease_and_fails_once_lost(redis_client, namespace):
    c = make(redis_client, namespace)
    run = c.trigger("p").job_id
    c.begin("p", run, lease_ttl=1)
    for _ in range(3):
        time.sleep(0.4)
        assert c.heartbeat("p", run, 1)
    assert c.status("p")["running"] == run
    time.sleep(1.2)
    assert not c.heartbeat("p", run, 1)


def test_stale_queued_id_is_replaced(redis_client, namespace):
    c = make(redis_client, namespace)
    dead = c.trigger("p").job_id
    fresh = c.trigger("p", stale=dead)
    assert fresh.status == "queued" and fresh.job_id != dead


def test_threshold_counts_annotations_then_triggers_and_resets(redis_client, namespace):
    c = make(redis_client, namespace)
    outcomes = [c.trigger("p", threshold=3) for _ in range(7)]
    statuses = [o.status for o in outcomes]
    assert statuses == ["counted", "counted", "queued", "counted", "counted", "coalesced", "counted"]
    assert outcomes[0].detail == "1" and outcomes[3].detail == "1"
    # A run starting resets the count: annotations before it are in its data.
    c.begin("p", outcomes[2].job_id, 30)
    assert c.status("p")["annotations_since_last_run"] == 0


def test_parallel_triggers_reserve_a_single_run(redis_client, namespace):
    ids, lock = [], threading.Lock()

    def fire():
        t = Coalescer(redis_client, namespace).trigger("p")
        with lock:
            ids.append((t.status, t.job_id))

    threads = [threading.Thread(target=fire) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(1 for s, _ in ids if s == "queued") == 1
    assert len({j for _, j in ids}) == 1


def test_projects_are_independent(redis_client, namespace):
    c = make(redis_client, namespace)
    a, b = c.trigger("a"), c.trigger("b")
    assert a.status == b.status == "queued" and a.job_id != b.job_id
