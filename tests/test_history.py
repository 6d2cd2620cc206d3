"""Policy history in a real Redis: compare-and-set promotion, list, diff, rollback, pin."""

from __future__ import annotations

import pytest

from optimizer.serving.policy import Demo, Policy
from optimizer.state.history import PolicyHistory, StaleLive, UnknownPolicy, diff_policies
from optimizer.state.store import PolicyStore

DEFAULT = Policy("Label the conversation.")
V2 = Policy("Label the conversation.\nGreetings are Greeting.", meta={"val_score": 0.8})
V3 = Policy(
    "Label the conversation.\nGreetings are Greeting.\nRefunds are Billing.",
    demos=(Demo("hi there", {"intent": ["Greeting"]}),),
    demo_k=1,
    meta={"val_score": 0.9},
)


@pytest.fixture
def store(redis_client, namespace):
    return PolicyStore(redis_client, DEFAULT, namespace=namespace)


@pytest.fixture
def history(store):
    return PolicyHistory(store)


def test_stale_promotion_is_refused_and_live_policy_kept(store):
    p = "7.1700000000"
    assert store.current(p).version == DEFAULT.version
    assert store.promote(p, V2, DEFAULT.version, job="a").ok
    # A job that started from the default before V2 went live must not overwrite V2.
    stale = store.promote(p, V3, DEFAULT.version, job="b")
    assert stale.status == "stale"
    assert store.current(p).version == V2.version


def test_pinned_project_is_never_auto_promoted(store, history):
    p = "pinned"
    store.current(p)
    history.pin(p)
    assert store.promote(p, V2, DEFAULT.version, job="auto").status == "pinned"
    assert store.current(p).version == DEFAULT.version
    history.unpin(p)
    assert store.promote(p, V2, DEFAULT.version, job="auto").ok


def test_list_shows_every_version_with_provenance(store, history):
    p = "list"
    store.current(p)
    store.promote(p, V2, DEFAULT.version, job="j1", source="train")
    store.record(p, V3, parent=V2.version, job="j2", source="train", status="rejected")
    entries = history.entries(p)
    by_version = {e.version: e for e in entries}
    assert set(by_version) == {DEFAULT.version, V2.version, V3.version}
    assert by_version[V2.version].live and not by_version[V3.version].live
    v2 = by_version[V2.version].to_dict()
    assert v2["job"] == "j1" and v2["parent"] == DEFAULT.version and v2["val_score"] == 0.8
    assert v2["promoted_at"] and by_version[V3.version].to_dict()["status"] == "rejected"
    assert history.versions(p)[0] in (V2.version, V3.version)


def test_rollback_is_recorded_and_bypasses_pin(store, history):
    p = "rb"
    store.current(p)
    store.promote(p, V2, DEFAULT.version, job="j1")
    history.pin(p)
    out = history.rollback(p, DEFAULT.version)
    assert out["status"] == "ok" and out["live"] == DEFAULT.version and out["pinned"]
    assert store.current(p).version == DEFAULT.version
    log = history.promotions(p)
    assert [e["version"] for e in log] == [V2.version, DEFAULT.version]
    assert log[-1]["source"] == "rollback" and log[-1]["parent"] == V2.version


def test_rollback_with_stale_expectation_conflicts(store, history):
    p = "race"
    store.current(p)
    store.promote(p, V2, DEFAULT.version)
    with pytest.raises(StaleLive, match="live version changed"):
        history.rollback(p, DEFAULT.version, expected=V3.version)
    assert store.current(p).version == V2.version


def test_rollback_to_an_unknown_version_is_refused(store, history):
    store.current("x")
    with pytest.raises(UnknownPolicy, match="no policy version"):
        history.rollback("x", "pv-000000000000")


def test_pin_with_version_rolls_back_and_pins_atomically(store, history):
    p = "pinv"
    store.current(p)
    store.promote(p, V2, DEFAULT.version)
    out = history.pin(p, DEFAULT.version)
    assert out["live"] == DEFAULT.version and history.pinned(p)["version"] == DEFAULT.version
    assert store.promote(p, V3, DEFAULT.version).status == "pinned"


def test_diff_shows_instruction_lines_and_demo_changes(store, history):
    p = "diff"
    store.current(p)
    store.promote(p, V2, DEFAULT.version)
    store.promote(p, V3, V2.version)
    d = history.diff(p, V2.version, V3.version)
    assert "+Refunds are Billing.\n" in d["instruction_diff"]
    assert d["instruction_diff"].startswith(f"--- {V2.version}")
    assert d["demos_added"] == [{"input": "hi there", "output": {"intent": ["Greeting"]}}]
    assert d["demos_removed"] == [] and d["demo_k"] == {"from": 0, "to": 1}
    back = diff_policies(V3, V2)
    assert back["demos_removed"] and "-Refunds are Billing.\n" in back["instruction_diff"]
