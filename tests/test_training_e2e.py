"""Retraining end to end against a real Label Studio 1.23.2, the backend under gunicorn and a real RQ worker.

Label Studio drives everything itself: it calls ``/setup`` and ``/predict`` on retrieve, sends the annotation
webhooks (accepted through the shared-secret header users add to the webhook) and, on ``ml.train``, sends
``START_TRAINING`` through its ML API connector. The worker then reads the annotations back through the SDK.

The scripted LLM (``testkit.training_stack.magic_responder``) answers correctly only under an
instruction the proposer
writes, so the optimiser's candidate is truly better on validation, and its promotion is visible in Label Studio as
a new model version whose predictions are right where v1's were wrong.
"""

from __future__ import annotations

import secrets
import sys

import pytest

from optimizer.runtime.versions import policy_version
from testkit.constants import SUPPORT_CONFIG
from testkit.fakellm import FakeLLM
from testkit.processes import wait_for
from testkit.training_stack import INTENTS, MAGIC_WORD, magic_responder
from tests.support.backend_http import finished, labelstudio_backend_events

pytestmark = [pytest.mark.labelstudio, pytest.mark.slow]

N_GOLD, N_OPEN = 12, 3


def dialogue(i: int) -> tuple[dict, str]:
    label = INTENTS[i % len(INTENTS)]
    text = f"Hello, this is about {label.replace('_', ' ').lower()} (case {i})."
    return {"dialogue": [{"author": "Customer", "text": text}, {"author": "Agent", "text": "Let me check."}]}, label


def choices(label: str) -> list[dict]:
    return [{"from_name": "intent", "to_name": "chat", "type": "choices", "value": {"choices": [label]}}]


def intent_of(prediction: dict) -> list[str]:
    return next(i["value"]["choices"] for i in prediction["result"] if i["from_name"] == "intent")


@pytest.fixture
def magic_llm():
    with FakeLLM(magic_responder) as fake:
        yield fake


def test_start_training_in_label_studio_promotes_v2_and_retrieve_stores_v2(labelstudio, start_backend, magic_llm):
    auth = ("labelstudio", secrets.token_urlsafe(12))
    secret = secrets.token_urlsafe(24)
    # The worker authenticates with a personal access token (a JWT the SDK refreshes); the harness uses the legacy one.
    personal_token = labelstudio.client.tokens.create().token
    assert personal_token.count(".") == 2 and personal_token != labelstudio.token
    env = {
        "LABEL_STUDIO_URL": labelstudio.url,
        "LABEL_STUDIO_API_KEY": personal_token,
        "RQ_QUEUE": "e2e-" + secrets.token_hex(4),
        "RETRAIN_EVERY_N": "0",
        "TRAIN_MIN_GOLD": "8",
        "OPTIMIZE_BUDGET": "120",
        "DEFAULT_PROMPT": "Label the customer-support dialogue.",
    }
    backend = start_backend(magic_llm.base_url, basic_auth=auth, webhook_secret=secret, env=env)
    backend.spawn([sys.executable, "-m", "optimizer", "worker"], name="worker")

    # 1. A project with tasks, connected to the backend; annotation webhooks carry the shared secret.
    data, labels = zip(*(dialogue(i) for i in range(N_GOLD + N_OPEN)), strict=True)
    project, task_ids = labelstudio.create_project(SUPPORT_CONFIG, list(data))
    ml = labelstudio.connect_with_secret(project.id, backend.url, auth, secret)

    # 2. Retrieve predictions: version v1 everywhere, wrong labels (the default prompt lacks the magic rule).
    v1, first = labelstudio.retrieve_all(project.id, ml.id, task_ids)
    assert all(len(p) == 1 and p[0]["model_version"] == v1 for p in first), first
    assert sum(intent_of(p[0]) == [label] for p, label in zip(first, labels, strict=True)) == 0

    # 3. Gold annotations through the SDK (Label Studio sends one ANNOTATION_CREATED webhook each).
    for task_id, label in zip(task_ids[:N_GOLD], labels[:N_GOLD], strict=True):
        labelstudio.client.annotations.create(id=task_id, result=choices(label))
    hooks = backend.wait_for_request("/webhook", N_GOLD)
    assert [a.status for a in hooks] == [201] * N_GOLD, backend.log_tail()

    # 4. "Start training" (ml.train): START_TRAINING through the ML API connector, answered with a job id.
    labelstudio.client.ml.train(ml.id)
    training = backend.wait_for_request("/webhook", N_GOLD + 1)[N_GOLD:]
    assert [(a.status, a.from_label_studio_ml_api) for a in training] == [(201, True)], backend.log_tail()
    events = labelstudio_backend_events(backend, project.id)
    job_id = next(e["job"] for e in events if e["action"] == "START_TRAINING")

    # 5. Wait for the job; it read the 12 annotations from Label Studio and promoted the proposer's rewrite.
    job = wait_for(lambda: finished(backend, job_id), 180, 0.5, what=f"job {job_id}; {backend.log_tail()}")
    assert job["status"] == "finished", job
    result = job["result"]
    assert result["promoted"] is True and result["gold"]["used"] == N_GOLD, result
    v2 = result["live_after"]
    assert v2 != policy_version(v1) and result["live_before"] == policy_version(v1)
    assert result["scores"]["val_score"] > result["scores"]["initial_val_score"]

    # 6. Label Studio sees v2 (with the same config and model), and a new retrieve stores v2 predictions, now right.
    served = labelstudio.ml_backend(ml.id)["model_version"]
    assert policy_version(served) == v2 and served.split(".", 1)[1] == v1.split(".", 1)[1]
    labelstudio.retrieve_predictions(project.id)
    for task_id, label in zip(task_ids, labels, strict=True):
        newest = [p for p in labelstudio.predictions(task_id) if p["model_version"] == served]
        assert len(newest) == 1, (task_id, labelstudio.predictions(task_id))
        assert intent_of(newest[0]) == [label]
        prompt = next(i for i in newest[0]["result"] if i["from_name"] == "prompt")
        assert MAGIC_WORD in prompt["value"]["text"][0]
