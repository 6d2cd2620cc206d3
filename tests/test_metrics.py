"""/metrics: Prometheus text format, behind auth, counters that move, Redis state, and gunicorn multiprocess sums."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from rq import Queue

from _wsgi import create_app
from optimizer.runtime import telemetry
from optimizer.runtime.versions import policy_version
from optimizer.serving.llm import LLMClient
from optimizer.serving.policy import Policy
from optimizer.state.store import PolicyStore
from testkit.backendprocess import ROOT, BackendProcess
from testkit.constants import REWARD_CONFIG
from testkit.fakellm import Reply

AUTH = {"Authorization": "Basic " + base64.b64encode(b"metrics:pw-123456").decode()}


def scrape(client) -> dict:
    """{(sample name, sorted labels): value}, parsed with prometheus-client's own parser."""
    response = client.get("/metrics", headers=AUTH)
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain; version=0.0.4")
    return parse(response.get_data(as_text=True))


def parse(text: str) -> dict:
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def predict(client, project: str, texts: list[str]):
    body = {
        "tasks": [{"data": {"prompt": "q", "response": t}} for t in texts],
        "label_config": REWARD_CONFIG,
        "project": project,
    }
    return client.post("/predict", json=body, headers=AUTH)


@pytest.fixture
def authed(make_settings):
    settings = make_settings(basic_auth_user="metrics", basic_auth_pass="pw-123456")
    app = create_app(settings)
    return app.test_client(), app.extensions["services"]


def test_metrics_is_behind_auth_but_health_is_not(authed):
    client, _ = authed
    assert client.get("/metrics").status_code == 401
    assert client.get("/health").status_code == 200
    assert client.get("/metrics", headers=AUTH).status_code == 200


def test_counters_move_after_a_prediction(authed, namespace):
    client, _ = authed
    project = f"{namespace}.1"
    before = scrape(client)
    response = predict(client, project, ["Good answer", "Bad answer", "ok"])
    assert response.status_code == 200
    version = response.get_json()["model_version"]
    after = scrape(client)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("lsml_predictions_total", project=project, policy_version=policy_version(version)) == 3
    assert delta("lsml_llm_calls_total", role="labeller", source="web") == 3
    assert delta("lsml_llm_tokens_total", role="labeller", kind="completion", source="web") > 0
    assert delta("lsml_predict_duration_seconds_count") == 1
    assert delta("lsml_predict_duration_seconds_sum") > 0
    assert delta("lsml_http_requests_total", method="POST", route="/predict", status="200") == 1
    assert value(after, "lsml_redis_up") == 1


def test_metric_types_are_declared(authed):
    client, _ = authed
    text = client.get("/metrics", headers=AUTH).get_data(as_text=True)
    types = {family.name: family.type for family in text_string_to_metric_families(text)}
    assert types["lsml_predictions"] == "counter"
    assert types["lsml_predict_duration_seconds"] == "histogram"
    assert types["lsml_llm_calls"] == "counter"
    assert types["lsml_jobs"] == "gauge"
    assert types["lsml_policy_promotions"] == "counter"
    assert len(text.splitlines()) == len(set(text.splitlines())), "no family may be written twice"


def test_failed_llm_calls_are_counted(authed, fake_llm, namespace):
    client, _ = authed
    project = f"{namespace}.2"
    assert predict(client, project, ["warm-up settles the output format and logprobs"]).status_code == 200
    before = scrape(client)
    for _ in range(2):
        fake_llm.faults.append(Reply(status=400, error="bad request"))  # not retryable: one call, one error each
    assert predict(client, project, ["a", "b"]).status_code == 200
    after = scrape(client)
    assert value(after, "lsml_prediction_failures_total", project=project, reason="llm") == 2
    assert (
        value(after, "lsml_llm_errors_total", role="labeller", source="web")
        - value(before, "lsml_llm_errors_total", role="labeller", source="web")
        == 2
    )


def test_jobs_promotions_and_validation_score_come_from_redis(make_settings, redis_server, namespace):
    settings = make_settings(basic_auth_user="metrics", basic_auth_pass="pw-123456", rq_queue=f"q-{namespace}")
    app = create_app(settings)
    client, services = app.test_client(), app.extensions["services"]
    rq_redis = redis.Redis.from_url(redis_server.url)
    queue = Queue(settings.rq_queue, connection=rq_redis)
    queue.enqueue("builtins.print", "one")
    queue.enqueue("builtins.print", "two")

    store: PolicyStore = services.store
    project = f"{namespace}.3"
    parent = store.current(project)
    better = Policy(instruction="Decide Good or Bad carefully.", meta={"val_score": 0.8125})
    assert store.promote(project, better, parent.version).ok

    samples = scrape(client)
    assert value(samples, "lsml_jobs", queue=settings.rq_queue, state="queued") == 2
    assert value(samples, "lsml_jobs", queue=settings.rq_queue, state="running") == 0
    assert value(samples, "lsml_policy_promotions_total", project=project) == 1
    assert value(samples, "lsml_policy_val_score", project=project, policy_version=better.version) == 0.8125
    rq_redis.close()


def test_worker_llm_usage_is_counted_in_redis(authed, fake_llm, settings):
    client, services = authed
    before = scrape(client)
    telemetry.set_component("worker")
    try:
        proposer = LLMClient(settings.proposer_config())
        telemetry.instrument_llm(proposer, "proposer", services.redis, settings.redis_namespace)
        proposer.complete([{"role": "user", "content": "Propose a better instruction."}])
    finally:
        telemetry.set_component("web")
    after = scrape(client)
    assert (
        value(after, "lsml_llm_calls_total", role="proposer", source="worker")
        - value(before, "lsml_llm_calls_total", role="proposer", source="worker")
        == 1
    )
    assert value(after, "lsml_llm_tokens_total", role="proposer", kind="prompt", source="worker") > 0


def test_metrics_answer_when_redis_is_down(make_settings):
    from testkit.redisserver import free_port

    settings = make_settings(redis_url=f"redis://127.0.0.1:{free_port()}/0", redis_timeout=0.2)
    client = create_app(settings).test_client()
    response = client.get("/metrics")
    assert response.status_code == 200
    samples = parse(response.get_data(as_text=True))
    assert value(samples, "lsml_redis_up") == 0


CLOSE = {"Connection": "close"}


@pytest.mark.slow
def test_gunicorn_workers_sum_into_one_view(redis_server, fake_llm, namespace, tmp_path):
    """Under gunicorn (the project's gunicorn.conf.py), any worker answering /metrics reports all workers' counts."""
    metrics_dir = tmp_path / "metrics"
    server = BackendProcess(
        redis_url=redis_server.url,
        llm_base_url=fake_llm.base_url,
        namespace=namespace,
        basic_auth=("metrics", "pw-123456"),
        workers=2,
        threads=4,
        env={"DEFAULT_PROMPT": "Label it.", "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)},
    )
    fake_llm.delay = 0.05  # keep requests in flight so both workers take some
    body = {"tasks": [{"data": {"prompt": "q", "response": "Good"}}], "label_config": REWARD_CONFIG, "project": "p1"}
    try:
        server.start()
        with httpx.Client(base_url=server.url, headers=AUTH, timeout=30) as http:
            sent, counter_pids = 0, set()
            # The kernel decides which worker accepts, and a kept-alive connection stays with its worker; so every
            # request opens a new connection, and bursts go on until both workers have counted something (bounded).
            for _ in range(10):
                with ThreadPoolExecutor(12) as pool:
                    statuses = list(
                        pool.map(lambda _: http.post("/predict", json=body, headers=CLOSE).status_code, range(24))
                    )
                assert statuses == [200] * 24
                sent += 24
                counter_pids = {p.name.split("_")[-1] for p in Path(metrics_dir).glob("counter_*.db")}
                if len(counter_pids) == 2:
                    break
            assert len(counter_pids) == 2, "both workers should have answered some requests"
            for _ in range(4):  # any worker may answer the scrape; each must see the sum
                samples = parse(http.get("/metrics").text)
                assert sum(v for (n, _labels), v in samples.items() if n == "lsml_predictions_total") == sent
                assert value(samples, "lsml_llm_calls_total", role="labeller", source="web") == sent
    finally:
        server.cleanup()


MULTIPROCESS_SCRIPT = """
import sys
import redis
from optimizer.runtime import telemetry
from optimizer.state.keys import KeyMap
from optimizer.serving.llm import LLMClient, LLMConfig

store = redis.Redis.from_url(sys.argv[1], decode_responses=True)
client = LLMClient(LLMConfig(base_url="http://127.0.0.1:1/v1", model="x"))
telemetry.instrument_llm(client, "labeller", store, sys.argv[2])
client.usage.add("calls", 3)
store.hincrby(KeyMap(sys.argv[2]).llm_usage(), "worker|proposer|calls", 5)
sys.stdout.write(telemetry.render(telemetry.RedisStateCollector(store, sys.argv[2], "q")).decode())
"""


def test_multiprocess_mode_merges_web_and_worker_llm_counters(redis_server, namespace, tmp_path):
    """As under gunicorn: the web's file-backed counters and the workers' Redis ones come out as one family."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", MULTIPROCESS_SCRIPT, redis_server.url, namespace],
        env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    samples = parse(proc.stdout)
    assert value(samples, "lsml_llm_calls_total", role="labeller", source="web") == 3
    assert value(samples, "lsml_llm_calls_total", role="proposer", source="worker") == 5
    assert proc.stdout.count("# TYPE lsml_llm_calls_total counter") == 1
    assert list(tmp_path.glob("counter_*.db")), "counters must live in the multiprocess directory"
