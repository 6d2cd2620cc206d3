"""Webhook handling through the real app over HTTP: triggers, counting, recording, answers, speed."""

from __future__ import annotations

import json
import statistics
import threading
import time

import pytest
import requests
from rq import Queue
from rq.job import Job
from werkzeug.serving import make_server

from testkit.constants import SUPPORT_CONFIG
from testkit.lspayloads import uid, webhook

AUTH = ("admin", "s3cret-pass")


@pytest.fixture
def backend(make_settings, namespace):
    """The real app on a real threaded HTTP server: the webhook path must be fast over the wire, not just in-process."""
    from _wsgi import create_app

    def start(**overrides):
        settings = make_settings(rq_queue=namespace, basic_auth_user=AUTH[0], basic_auth_pass=AUTH[1], **overrides)
        app = create_app(settings)
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        servers.append(server)
        session = requests.Session()
        session.auth = AUTH
        return f"http://127.0.0.1:{server.server_port}", session, app.extensions["services"]

    servers = []
    yield start
    for server in servers:
        server.shutdown()


def post(session, url, payload):
    return session.post(url + "/webhook", data=json.dumps(payload), headers={"Content-Type": "application/json"})


def test_start_training_queues_one_rq_job_and_answers_with_its_id(backend, redis_server):
    url, session, services = backend()
    first = post(session, url, webhook("START_TRAINING", 5, SUPPORT_CONFIG))
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["status"] == "queued" and body["job"].startswith("train-")
    queue = Queue(services.settings.rq_queue, connection=services.rq_redis)
    assert queue.job_ids == [body["job"]]
    job = Job.fetch(body["job"], connection=services.rq_redis)
    assert job.func_name == "optimizer.jobs.functions.train" and job.args == (uid(5),)
    # A second click before the worker picked it up joins the same run.
    again = post(session, url, webhook("START_TRAINING", 5, SUPPORT_CONFIG)).json()
    assert again == {"action": "START_TRAINING", "status": "coalesced", "job": body["job"]}
    assert queue.count == 1


def test_annotations_queue_a_run_every_n(backend):
    url, session, _ = backend(retrain_every_n=3)
    answers = [post(session, url, webhook("ANNOTATION_CREATED", 6, SUPPORT_CONFIG)).json() for _ in range(3)]
    assert [a["status"] for a in answers] == ["counted", "counted", "queued"]
    assert "job" not in answers[0] and answers[1]["annotations_since_last_run"] == 2
    assert answers[2]["job"]
    updated = post(session, url, webhook("ANNOTATION_UPDATED", 6, SUPPORT_CONFIG)).json()
    assert updated["status"] == "counted" and updated["annotations_since_last_run"] == 1


def test_retrain_every_n_zero_turns_annotation_triggers_off(backend):
    url, session, services = backend(retrain_every_n=0)
    for _ in range(5):
        answer = post(session, url, webhook("ANNOTATION_CREATED", 7, SUPPORT_CONFIG)).json()
        assert answer["status"] == "recorded" and "job" not in answer
    assert Queue(services.settings.rq_queue, connection=services.rq_redis).count == 0


def test_other_actions_are_acknowledged_and_recorded_without_secrets(backend):
    url, session, services = backend()
    deleted = post(session, url, webhook("ANNOTATIONS_DELETED", 8, SUPPORT_CONFIG))
    updated = post(session, url, webhook("PROJECT_UPDATED", 8, SUPPORT_CONFIG))
    assert deleted.status_code == updated.status_code == 201
    assert deleted.json()["status"] == updated.json()["status"] == "recorded"
    events = session.get(url + "/projects/8/events").json()["events"]
    assert [e["action"] for e in events] == ["PROJECT_UPDATED", "ANNOTATIONS_DELETED"]
    assert events[1]["annotation_ids"] == [2]
    raw = services.redis.lrange(f"{services.settings.redis_namespace}:project:{uid(8)}:events", 0, -1)
    assert raw and not any("token" in r or "redacted" in r for r in raw)


def test_webhook_stores_label_config_and_numeric_alias(backend):
    url, session, services = backend()
    post(session, url, webhook("PROJECT_UPDATED", 9, SUPPORT_CONFIG))
    assert services.projects.label_config(uid(9)) == SUPPORT_CONFIG
    assert services.projects.resolve("9") == uid(9)
    listing = session.get(url + "/projects/9/policies")
    assert listing.status_code == 200 and listing.json()["project"] == uid(9)


def test_bad_webhooks_get_4xx_json(backend):
    url, session, _ = backend()
    no_project = webhook("START_TRAINING", 1, SUPPORT_CONFIG)
    del no_project["project"]
    answer = post(session, url, no_project)
    assert answer.status_code == 400 and "project" in answer.json()["error"]
    assert post(session, url, {"project": {"id": 1}}).status_code == 400  # no action
    assert session.post(url + "/webhook", data="not json").status_code == 400
    unknown = post(session, url, {"action": "SOMETHING_NEW", "project": {"id": 1}})
    assert unknown.status_code == 201 and unknown.json()["status"] == "recorded"


def test_webhook_requires_auth_or_the_shared_secret(backend):
    url, _, _ = backend(webhook_secret="hook-secret")
    payload = json.dumps(webhook("START_TRAINING", 2, SUPPORT_CONFIG))
    headers = {"Content-Type": "application/json"}
    assert requests.post(url + "/webhook", data=payload, headers=headers).status_code == 401
    ok = requests.post(url + "/webhook", data=payload, headers={**headers, "X-Webhook-Secret": "hook-secret"})
    assert ok.status_code == 201 and ok.json()["job"]


def test_webhooks_answer_well_within_label_studios_timeout(backend):
    """LS waits at most 1 s, inside the annotator's save; the design target is 100 ms (bench/ has the figures)."""
    url, session, _ = backend(retrain_every_n=5)
    post(session, url, webhook("ANNOTATION_CREATED", 3, SUPPORT_CONFIG))  # warm-up: imports, script loading
    timings = []
    for i in range(30):
        action = "START_TRAINING" if i % 3 == 0 else "ANNOTATION_CREATED"
        started = time.perf_counter()
        answer = post(session, url, webhook(action, 3, SUPPORT_CONFIG))
        timings.append(time.perf_counter() - started)
        assert answer.status_code == 201
    assert statistics.median(timings) < 0.1 and max(timings) < 0.5, timings


def test_legacy_train_route_queues_like_start_training(backend):
    url, session, services = backend()
    body = {"project": uid(12), "label_config": SUPPORT_CONFIG, "annotations": []}
    answer = session.post(url + "/train", json=body)
    assert answer.status_code == 201 and answer.json()["job"].startswith("train-")
    assert services.projects.label_config(uid(12)) == SUPPORT_CONFIG  # kept for the job to render tasks


def test_webhook_with_redis_down_is_a_503_not_a_lost_trigger_reported_as_queued(make_settings, namespace):
    from _wsgi import create_app
    from testkit.redisserver import RedisServer

    own = RedisServer().start()
    settings = make_settings(redis_url=own.url, rq_queue=namespace)
    client = create_app(settings).test_client()
    own.stop()
    try:
        answer = client.post("/webhook", json=webhook("START_TRAINING", 13, SUPPORT_CONFIG))
        assert answer.status_code == 503
        assert "Redis is unavailable" in answer.get_json()["error"] and "job" not in answer.get_json()
    finally:
        own.cleanup()
