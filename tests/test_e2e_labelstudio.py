"""End to end against a real Label Studio 1.23.2 and the backend under real gunicorn (issue 2).

Label Studio drives the backend exactly as it does for users: it connects with its own basic-auth settings, calls
``/health``, ``/setup`` and ``/predict`` itself, stores what comes back, and sends its own webhooks. The LLM is the
scripted fake over real HTTP, whose keyword responder picks every label named in a dialogue, so each task's labels
are known in advance and any mix-up of task order or payload shape shows up as a wrong label on a wrong task.
"""

from __future__ import annotations

import secrets

import httpx
import pytest
from label_studio_sdk.core.api_error import ApiError

from testkit.backendprocess import basic_auth_header
from testkit.constants import SUPPORT_CONFIG
from testkit.fakellm import system_text

pytestmark = [pytest.mark.labelstudio, pytest.mark.slow]

PROMPT = "Label the customer-support dialogue with every intent that applies."
INTENTS = {
    "Greeting", "Account_Verification", "Technical_Support", "Information_Request", "Billing",
    "Complaint", "Feedback", "Cancellation", "Order_Status", "Other",
}  # fmt: skip
ALLOWED_ITEMS = {("intent", "chat", "choices"), ("prompt", "chat", "textarea"), ("response", "chat", "textarea")}

# Five dialogues and the intents the keyword responder must find in each (no other label name occurs in them).
DIALOGUES = [
    ([("Customer", "Hi, I have a billing question about my last invoice."), ("Agent", "Sure, let me look.")],
     {"Billing"}),
    ([("Customer", "What is my order status? It was due on Monday.")], {"Order_Status"}),
    ([("Customer", "I want a cancellation of my plan."), ("Agent", "Sorry to hear that."),
      ("Customer", "And this is a formal complaint.")], {"Cancellation", "Complaint"}),
    ([("Customer", "The app crashes at login, I need technical support.")], {"Technical_Support"}),
    ([("Customer", "Some feedback: the new design is lovely.")], {"Feedback"}),
]  # fmt: skip


def dialogue_tasks() -> list[dict]:
    return [{"dialogue": [{"author": a, "text": t} for a, t in turns]} for turns, _ in DIALOGUES]


def project_uid(project) -> str:
    """How Label Studio names the project in /setup and /predict: ``<id>.<created_at unix seconds>``."""
    return f"{project.id}.{int(project.created_at.timestamp())}"


def setup_version(backend, project) -> str:
    response = httpx.post(
        backend.url + "/setup",
        json={"project": project_uid(project), "schema": SUPPORT_CONFIG},
        headers=backend.auth_header,
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return response.json()["model_version"]


def items(result: list[dict], from_name: str) -> list[dict]:
    return [item for item in result if item["from_name"] == from_name]


def test_support_project_end_to_end(labelstudio, start_backend, fake_llm):
    assert labelstudio.version == "1.23.2"
    auth = ("labelstudio", secrets.token_urlsafe(12))
    backend = start_backend(fake_llm.base_url, basic_auth=auth, env={"DEFAULT_PROMPT": PROMPT})

    # 1. A project with the seed's support config and five dialogues, through the SDK.
    project, task_ids = labelstudio.create_project(SUPPORT_CONFIG, dialogue_tasks())
    assert len(task_ids) == 5

    # 2. Connect the backend with basic auth. A wrong password is refused, so the right one is what gets LS in.
    with pytest.raises(ApiError) as refused:
        labelstudio.connect_backend(project.id, backend.url, basic_auth=(auth[0], "wrong-password"))
    assert refused.value.status_code == 400
    assert [a.status for a in backend.wait_for_request("/setup", 1)] == [401]
    ml = labelstudio.connect_backend(project.id, backend.url, basic_auth=auth)
    state = labelstudio.ml_backend(ml.id)
    assert (state["state"], state["auth_method"], state["basic_auth_pass_is_set"]) == ("CO", "BASIC_AUTH", True)
    setups = backend.requests("/setup")[1:]
    assert setups and all(a.status == 200 and a.from_label_studio_ml_api for a in setups)

    # 3. Retrieve predictions for every task: one /predict call for the whole batch.
    done = labelstudio.retrieve_predictions(project.id)
    assert done["processed_items"] == 5
    predicts = backend.wait_for_request("/predict", 1)
    assert [a.status for a in predicts] == [200], backend.log_tail()

    # 4. One prediction per task, right names and types, the expected labels, the backend's version everywhere.
    version = setup_version(backend, project)
    assert labelstudio.ml_backend(ml.id)["model_version"] == version
    for task_id, (_, expected) in zip(task_ids, DIALOGUES, strict=True):
        predictions = labelstudio.predictions(task_id)
        assert len(predictions) == 1, predictions
        prediction = predictions[0]
        assert prediction["model_version"] == version
        assert 0.0 < prediction["score"] <= 1.0
        result = prediction["result"]
        assert {(i["from_name"], i["to_name"], i["type"]) for i in result} <= ALLOWED_ITEMS
        (intent,) = items(result, "intent")
        assert set(intent["value"]["choices"]) <= INTENTS
        assert set(intent["value"]["choices"]) == expected, (task_id, intent)
        (prompt,) = items(result, "prompt")
        assert prompt["value"]["text"] == [PROMPT]

    # 5. Interactive annotation with a prompt typed into the prompt TextArea: used at once, echoed back.
    typed = "Only tag billing matters. Marker " + secrets.token_hex(4)
    context = {"result": [{"from_name": "prompt", "to_name": "chat", "type": "textarea", "value": {"text": [typed]}}]}
    seen = len(fake_llm.requests)
    answer = labelstudio.interactive_annotating(ml.id, task_ids[0], context)
    assert "errors" not in answer, answer
    asked = fake_llm.requests[seen:]
    assert len(asked) >= 1 and all(system_text(body).startswith(typed) for body in asked)
    assert "Hi, I have a billing question" in asked[-1]["messages"][-1]["content"]
    data = answer["data"]
    (prompt,) = items(data["result"], "prompt")
    assert prompt["value"]["text"] == [typed]
    (intent,) = items(data["result"], "intent")
    assert intent["value"]["choices"] == ["Billing"]
    assert len(labelstudio.predictions(task_ids[0])) == 1  # interactive answers are not stored

    # 6. Retrieving again asks nothing: every task already has a prediction of the current version.
    labelstudio.retrieve_predictions(project.id)
    assert len(backend.requests("/predict")) == 2  # the retrieve above and the interactive call
    assert all(len(labelstudio.predictions(t)) == 1 for t in task_ids)


def test_webhooks_reach_backend_with_basic_auth_only_with_a_header(labelstudio, start_backend, fake_llm):
    """Label Studio sends webhooks with the webhook's own headers, never the ML backend's basic auth.

    From LS 1.23.2's source: the webhook it auto-creates for ``<url>/webhook`` has no headers
    (``ml/models.py: create_ml_webhook``), and ``webhooks/utils.py: run_webhook_sync`` posts with ``webhook.headers``
    only. "Start training" instead goes through the ML API connector, which adds basic auth. So annotation events
    are refused until the user adds ``X-Webhook-Secret`` (or an ``Authorization: Basic`` header) to that webhook.
    """
    auth = ("labelstudio", secrets.token_urlsafe(12))
    secret = secrets.token_urlsafe(24)
    backend = start_backend(fake_llm.base_url, basic_auth=auth, webhook_secret=secret)
    project, task_ids = labelstudio.create_project(SUPPORT_CONFIG, dialogue_tasks()[:4])
    ml = labelstudio.connect_backend(project.id, backend.url, basic_auth=auth)

    (hook,) = labelstudio.project_webhooks(project.id)
    assert hook["url"] == backend.url + "/webhook"
    assert hook["send_payload"] and hook["send_for_all_actions"]
    assert not hook["headers"]  # LS does not copy the backend's credentials

    def annotate(task_id: int) -> int:
        """Submit an annotation; return the status the backend gave the ANNOTATION_CREATED webhook."""
        before = len(backend.requests("/webhook"))
        result = [{"from_name": "intent", "to_name": "chat", "type": "choices", "value": {"choices": ["Billing"]}}]
        labelstudio.client.annotations.create(id=task_id, result=result)
        hooks = backend.wait_for_request("/webhook", before + 1)
        assert len(hooks) == before + 1, backend.log_tail()
        assert not hooks[-1].from_label_studio_ml_api  # sent by LS's webhook runner, not the ML API connector
        return hooks[-1].status

    assert annotate(task_ids[0]) == 401

    # Start training goes through the ML API connector with the backend's basic auth: accepted without a header.
    before = len(backend.requests("/webhook"))
    labelstudio.client.ml.train(ml.id)
    training = backend.wait_for_request("/webhook", before + 1)[before:]
    assert [(a.status, a.from_label_studio_ml_api) for a in training] == [(201, True)]

    # What docs/security.md tells users to do: add the secret (or basic auth) as a header of that webhook.
    labelstudio.set_webhook_headers(project.id, hook["url"], {"X-Webhook-Secret": "not-the-secret"})
    assert annotate(task_ids[1]) == 401
    updated = labelstudio.set_webhook_headers(project.id, hook["url"], {"X-Webhook-Secret": secret})
    assert updated["headers"] == {"X-Webhook-Secret": secret}
    assert annotate(task_ids[2]) == 201
    labelstudio.set_webhook_headers(project.id, hook["url"], {"Authorization": basic_auth_header(*auth)})
    assert annotate(task_ids[3]) == 201
