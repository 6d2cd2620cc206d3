"""Cancelling a job over HTTP and from the CLI (Flask test client, real Redis, RQ's in-process worker), and the
one race the cancel key settles: a run that starts committing its result refuses a cancel that comes later.

The real-worker halves (a bulk run stopped mid-run, a training run stopped mid-optimisation) are in test_bulk.py and
test_training_cancel.py; here each answer of the API is pinned down: who asked, 202, 404, 409 naming the status,
the auth and origin rules of every write.
"""

from __future__ import annotations

import base64
import json

import pytest
from rq import SimpleWorker

from optimizer.jobs.queue import JobQueue
from optimizer.state.cancels import CancelRegistry, RequestOutcome
from testkit.constants import SUPPORT_CONFIG
from testkit.fakels import FakeLabelStudio
from testkit.lspayloads import uid
from testkit.training_stack import gold_tasks

AUTH = {"Authorization": "Basic " + base64.b64encode(b"admin:s3cret-pass").decode()}
PROJECT = uid(1)


def test_a_cancel_and_a_commit_race_for_one_key_and_the_first_wins(redis_client, namespace):
    cancels = CancelRegistry(redis_client, namespace, ttl=60)
    first = cancels.request("job-a", "admin")
    assert first.outcome is RequestOutcome.NEW and first.cancel.by == "admin"
    again = cancels.request("job-a", "someone-else")
    assert again.outcome is RequestOutcome.REPEATED and again.cancel.by == "admin"  # the first request stands
    assert cancels.commit("job-a").by == "admin"  # the run finds the cancel: it must commit nothing
    assert cancels.commit("job-b") is None  # nobody asked: the run commits
    late = cancels.request("job-b", "admin")
    assert late.outcome is RequestOutcome.TOO_LATE and late.cancel is None
    assert cancels.requested("job-b") is None and cancels.requested("job-c") is None
    assert 0 < redis_client.ttl(cancels.keys.job_cancel("job-a")) <= 60  # it outlives the job, not forever


@pytest.fixture
def api(make_settings, namespace, monkeypatch):
    from _wsgi import create_app

    with FakeLabelStudio(SUPPORT_CONFIG, gold_tasks(n=0, unlabelled=6)) as ls:

        def build(**overrides):
            values = dict(rq_queue=namespace, label_studio_url=ls.url, label_studio_api_key=ls.token,
                          basic_auth_user="admin", basic_auth_pass="s3cret-pass")  # fmt: skip
            settings = make_settings(**{**values, **overrides})
            for name in ("redis_url", "redis_namespace", "rq_queue", "label_studio_url", "llm_base_url"):
                monkeypatch.setenv(name.upper(), str(getattr(settings, name)))
            monkeypatch.setenv("LABEL_STUDIO_API_KEY", ls.token)
            app = create_app(settings)
            client = app.test_client()
            headers = AUTH if settings.basic_auth_user else {}
            setup = client.post("/setup", json={"project": PROJECT, "schema": SUPPORT_CONFIG}, headers=headers)
            assert setup.status_code == 200
            services = app.extensions["services"]
            return client, services, ls

        yield build


def post(client, path, headers=AUTH, **kwargs):
    return client.post(path, headers={**headers, **kwargs.pop("extra", {})}, **kwargs)


def test_cancel_answers_202_with_who_asked_then_404_and_409_naming_the_status(api):
    client, services, ls = api()
    queue = JobQueue(services)
    run = queue.enqueue_bulk(PROJECT, services.store.current(PROJECT).version, reason="test")
    assert post(client, f"/jobs/{run}/cancel", headers={}).status_code == 401  # a write: basic auth first
    foreign = post(client, f"/jobs/{run}/cancel", extra={"Origin": "https://evil.example"})
    assert foreign.status_code == 403 and services.cancels.requested(run) is None  # a page elsewhere: refused
    answer = post(client, f"/jobs/{run}/cancel")
    assert answer.status_code == 202, answer.get_json()
    body = answer.get_json()
    assert body["state"] == "cancelling" and body["cancelled_by"]["by"] == "admin"
    assert post(client, f"/jobs/{run}/cancel").status_code == 202  # asking twice is harmless
    SimpleWorker([services.settings.bulk_queue], connection=services.rq_redis).work(burst=True)
    ended = client.get(f"/jobs/{run}", headers=AUTH).get_json()
    assert ended["status"] == ended["state"] == "cancelled" and ended["cancelled_by"]["by"] == "admin", ended
    assert ls.imports == 0 and ls.predictions() == []  # the plan stopped before it queued a chunk
    refused = post(client, f"/jobs/{run}/cancel")
    assert refused.status_code == 409 and refused.get_json()["field"] == "job"
    assert "already cancelled" in refused.get_json()["error"]
    assert post(client, "/jobs/no-such-job/cancel").status_code == 404
    assert post(client, "/jobs/bad%20id/cancel").status_code == 400


def test_a_finished_run_cannot_be_cancelled(api):
    client, services, ls = api()
    run = JobQueue(services).enqueue_bulk(PROJECT, services.store.current(PROJECT).version, reason="test")
    SimpleWorker([services.settings.bulk_queue], connection=services.rq_redis).work(burst=True)
    assert client.get(f"/jobs/{run}", headers=AUTH).get_json()["status"] == "finished"
    assert len(ls.predictions()) == 6
    refused = post(client, f"/jobs/{run}/cancel")
    assert refused.status_code == 409 and "already finished" in refused.get_json()["error"], refused.get_json()


def test_without_auth_cancel_is_a_write_like_the_others(api):
    client, services, _ = api(basic_auth_user="", basic_auth_pass="")
    run = JobQueue(services).enqueue_bulk(PROJECT, services.store.current(PROJECT).version, reason="test")
    assert post(client, f"/jobs/{run}/cancel", headers={}).status_code == 403  # anonymous writes are off
    client, services, _ = api(basic_auth_user="", basic_auth_pass="", allow_anonymous_writes=True)
    run = JobQueue(services).enqueue_bulk(PROJECT, services.store.current(PROJECT).version, reason="test")
    answer = post(client, f"/jobs/{run}/cancel", headers={})
    assert answer.status_code == 202 and answer.get_json()["cancelled_by"]["by"] == "anonymous"


def test_the_cli_cancels_as_cli_and_exits_1_for_an_ended_job(api, capsys):
    from optimizer.cli.main import main

    _, services, _ = api()
    run = JobQueue(services).enqueue_bulk(PROJECT, services.store.current(PROJECT).version, reason="test")
    assert main(["jobs", "cancel", run]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["id"] == run and printed["cancelled_by"]["by"] == "cli" and printed["state"] == "cancelling"
    SimpleWorker([services.settings.bulk_queue], connection=services.rq_redis).work(burst=True)
    assert main(["jobs", "show", run]) == 0 and json.loads(capsys.readouterr().out)["state"] == "cancelled"
    assert main(["jobs", "cancel", run]) == 1
    assert "already cancelled" in capsys.readouterr().err
    assert main(["jobs", "cancel", "no-such-job"]) == 2
    assert main(["jobs", "cancel", "bad id"]) == 2
