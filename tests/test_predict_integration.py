"""/predict against real parts: a redis-server and the scripted LLM over HTTP."""

import threading
import time

import pytest

from _wsgi import create_app
from optimizer.runtime.versions import policy_version
from optimizer.serving.policy import Policy
from testkit.constants import SUPPORT_CONFIG, THREE_CONTROLS_CONFIG
from testkit.fakellm import Reply, keyword_responder
from testkit.redisserver import RedisServer


def tasks_of(texts):
    return [{"id": i, "data": {"text": t}} for i, t in enumerate(texts)]


def test_batch_runs_concurrently_within_the_bound(make_settings, fake_llm):
    fake_llm.delay = 0.1
    client = create_app(make_settings(llm_concurrency=8)).test_client()
    started = time.perf_counter()
    response = client.post(
        "/predict", json={"tasks": tasks_of(["billing"] * 24), "label_config": THREE_CONTROLS_CONFIG}
    )
    elapsed = time.perf_counter() - started
    assert response.status_code == 200 and len(response.get_json()["results"]) == 24
    assert fake_llm.max_active == 8
    assert elapsed < 24 * 0.1 / 3  # sequential would take 2.4 s


def test_one_failing_task_in_a_batch_of_twenty(client, fake_llm):
    def responder(body):
        text = body["messages"][-1]["content"]
        if "poison" in text:
            return Reply(status=400, error="content rejected")
        if "flaky" in text:
            return Reply(status=503)
        return keyword_responder(body)

    fake_llm.responder = responder
    texts = ["shipping"] * 20
    texts[7] = "poison"
    texts[13] = "flaky"
    response = client.post("/predict", json={"tasks": tasks_of(texts), "label_config": THREE_CONTROLS_CONFIG})
    assert response.status_code == 200
    results = response.get_json()["results"]
    assert len(results) == 20
    assert results[7] == [] and results[13] == []  # no prediction: Label Studio stores nothing and asks again
    ok = [r for i, r in enumerate(results) if i not in (7, 13)]
    assert all(r["result"][0]["value"]["choices"] == ["shipping"] for r in ok)
    flaky_calls = [r for r in fake_llm.requests if "flaky" in r["messages"][-1]["content"]]
    poison_calls = [r for r in fake_llm.requests if "poison" in r["messages"][-1]["content"]]
    assert len(flaky_calls) == 3 and len(poison_calls) == 1  # 503 retried twice, 400 never


def test_scores_come_from_logprobs_and_vary(client, fake_llm):
    answers = iter([-0.01, -1.5])

    def responder(body):
        return Reply(keyword_responder(body).content, logprob=next(answers))

    fake_llm.responder = responder
    for text in ("billing",):
        first = client.post("/predict", json={"tasks": tasks_of([text]), "label_config": THREE_CONTROLS_CONFIG})
        second = client.post("/predict", json={"tasks": tasks_of([text]), "label_config": THREE_CONTROLS_CONFIG})
    high, low = first.get_json()["results"][0]["score"], second.get_json()["results"][0]["score"]
    assert 0 < low < high <= 1


def test_fallback_score_without_logprobs_reflects_answer_quality(make_settings, fake_llm):
    replies = iter(['{"intent": ["Billing"]}', '{"intent": ["Billing", "Bogus", "Nope"]}', "Billing"])
    fake_llm.responder = lambda body: Reply(next(replies), logprob=None)
    client = create_app(make_settings(llm_logprobs=False)).test_client()
    scores = []
    for _ in range(3):
        body = {"tasks": [{"data": {"dialogue": [{"author": "C", "text": "x"}]}}], "label_config": SUPPORT_CONFIG}
        scores.append(client.post("/predict", json=body).get_json()["results"][0]["score"])
    assert scores[0] == 1.0  # well-formed JSON, every label valid
    assert scores[1] == pytest.approx(1.0 / 3, abs=1e-6)  # two of three proposed labels were invalid
    assert scores[2] == 0.7  # recovered from plain text


def test_redis_going_away_mid_traffic_keeps_serving_the_last_policy(make_settings):
    server = RedisServer(persistent=True).start()  # like production: a restart keeps the data
    try:
        app = create_app(make_settings(redis_url=server.url, redis_timeout=0.2))
        client = app.test_client()
        store = app.extensions["services"].store
        store.retry_interval = 0.2
        body = {"tasks": tasks_of(["billing"]), "label_config": THREE_CONTROLS_CONFIG, "project": "7.1"}
        default = policy_version(client.post("/predict", json=body).get_json()["model_version"])
        promoted = Policy("Promoted prompt.")
        assert store.promote("7.1", promoted, parent=default).ok

        statuses, versions, stop = [], [], threading.Event()

        def traffic():
            local = app.test_client()
            while not stop.is_set():
                response = local.post("/predict", json=body)
                statuses.append(response.status_code)
                versions.append(response.get_json()["model_version"])

        threads = [threading.Thread(target=traffic) for _ in range(3)]
        for t in threads:
            t.start()
        time.sleep(0.3)
        server.stop()
        time.sleep(0.8)
        health = client.get("/health").get_json()
        assert health["status"] == "UP" and health["redis"] == "unreachable"
        setup = client.post("/setup", json={"project": "7.1", "schema": THREE_CONTROLS_CONFIG})
        assert setup.status_code == 200 and policy_version(setup.get_json()["model_version"]) == promoted.version
        server.start()
        time.sleep(0.6)
        stop.set()
        for t in threads:
            t.join()
        assert set(statuses) == {200}
        assert {policy_version(v) for v in versions} == {promoted.version}
        assert client.get("/health").get_json()["redis"] == "ok"
    finally:
        server.cleanup()


def test_unknown_project_without_redis_serves_the_default(make_settings, redis_server):
    app = create_app(make_settings(redis_url="redis://127.0.0.1:1/0", redis_timeout=0.1))
    client = app.test_client()
    body = {"tasks": tasks_of(["billing"]), "label_config": THREE_CONTROLS_CONFIG, "project": "9.9"}
    response = client.post("/predict", json=body)
    assert response.status_code == 200
    assert policy_version(response.get_json()["model_version"]) == app.extensions["services"].default_policy.version
