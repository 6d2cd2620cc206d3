"""The stack-wide LLM limit (a Redis semaphore with leases), interactive priority, and closing calls at the deadline."""

from __future__ import annotations

import threading
import time

from optimizer.labelstudio.labelconfig import parse_label_config
from optimizer.serving.llm import LLMClient, LLMConfig, Priority
from optimizer.serving.policy import Policy
from optimizer.serving.predictor import FailureReason, Predictor
from optimizer.state.llmslots import RedisSlots
from testkit.constants import THREE_CONTROLS_CONFIG
from testkit.fakellm import FakeLLM

THREE = parse_label_config(THREE_CONTROLS_CONFIG)


def test_limit_holds_across_clients_sharing_redis(redis_client, namespace):
    with FakeLLM(delay=0.1) as llm:
        # Two clients, as two processes would have: each allows 8 in flight; together they get 3.
        config = LLMConfig(base_url=llm.base_url, model="fake", concurrency=8)
        clients = [LLMClient(config, limiter=RedisSlots(redis_client, namespace, limit=3, lease=10)) for _ in range(2)]
        threads = [threading.Thread(target=c.complete, args=([{"role": "user", "content": "x"}],))
                   for c in clients for _ in range(8)]  # fmt: skip
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(llm.requests) == 16 and llm.max_active == 3


def test_interactive_caller_gets_the_next_free_slot_before_bulk_waiters(redis_client, namespace):
    slots = RedisSlots(redis_client, namespace, limit=1, lease=10)
    held = slots.acquire(Priority.BULK, None)
    order: list[str] = []

    def wait(priority: Priority) -> None:
        token = slots.acquire(priority, time.monotonic() + 10)
        order.append(priority.value)
        time.sleep(0.05)
        slots.release(token)

    bulk = [threading.Thread(target=wait, args=(Priority.BULK,)) for _ in range(3)]
    for t in bulk:
        t.start()
    time.sleep(0.1)  # the bulk callers are already waiting when the annotator arrives
    interactive = threading.Thread(target=wait, args=(Priority.INTERACTIVE,))
    interactive.start()
    time.sleep(0.1)
    slots.release(held)
    for t in [*bulk, interactive]:
        t.join()
    assert order[0] == "interactive" and sorted(order) == ["bulk"] * 3 + ["interactive"]


def test_a_dead_holders_slot_frees_when_its_lease_runs_out(redis_client, namespace):
    slots = RedisSlots(redis_client, namespace, limit=1, lease=0.3)
    assert slots.acquire(Priority.BULK, None)  # never released: the holder "died"
    assert slots.acquire(Priority.BULK, time.monotonic() + 0.1) is None
    started = time.monotonic()
    assert slots.acquire(Priority.BULK, time.monotonic() + 2)
    assert time.monotonic() - started < 0.5


def test_deadline_closes_the_calls_in_flight_and_nothing_is_retried():
    with FakeLLM(delay=1.5) as llm:
        predictor = Predictor(LLMClient(LLMConfig(base_url=llm.base_url, model="fake", concurrency=4, timeout=30)))
        started = time.monotonic()
        got = predictor.predict_many(Policy("x"), THREE, ["a", "b", "c", "d"], deadline=time.monotonic() + 0.5)
        elapsed = time.monotonic() - started
        assert elapsed < 1.2  # not LLM_TIMEOUT, not the 1.5 s answer
        assert {p.error.reason for p in got} == {FailureReason.DEADLINE}
        assert len(llm.requests) == 4  # sent once each, never retried past the deadline
        time.sleep(1.5)
        assert llm.abandoned == 4  # the server found every connection closed when it answered
