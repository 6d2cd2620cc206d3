"""A provider that answers 200 with something that is not a usable completion: every such task comes back as an
empty prediction (``[]``, which Label Studio stores as nothing) with a typed, counted reason, never a 500.

The provider is the scripted OpenAI-compatible server over real HTTP, so the ``openai`` SDK and our body reader see
exactly the bytes a broken gateway would send.
"""

from __future__ import annotations

import pytest

from _wsgi import create_app
from optimizer.labelstudio.labelconfig import parse_label_config
from optimizer.serving.predictor import FailureReason
from testkit.constants import THREE_CONTROLS_CONFIG
from testkit.fakellm import Reply

GOOD = '{"topics": ["shipping"], "sentiment": "neutral", "urgency": "low"}'

# Input text -> what the provider answers for it, and the reason the backend must count.
BROKEN = {
    "html-page": (Reply(body=b"<html><body>502 Bad Gateway</body></html>"), FailureReason.LLM_ERROR),
    "not-json": (Reply(body=b'{"choices": [', headers={"Content-Type": "application/json"}), FailureReason.LLM_ERROR),
    "no-choices": (Reply(body={"id": "x", "object": "chat.completion", "choices": []}), FailureReason.LLM_ERROR),
    "null-content": (
        Reply(
            body={"choices": [{"index": 0, "message": {"role": "assistant", "content": None}, "finish_reason": "stop"}]}
        ),
        FailureReason.UNPARSABLE,
    ),
    "cut-at-cap": (Reply('{"topics": ["ship', finish_reason="length"), FailureReason.TRUNCATED),
}


@pytest.fixture
def app(make_settings, fake_llm):
    def responder(body):
        text = body["messages"][-1]["content"]
        for marker, (reply, _) in BROKEN.items():
            if marker in text:
                return reply
        return Reply(GOOD)

    fake_llm.responder = responder
    return create_app(make_settings(llm_max_retries=1))


def test_each_broken_200_is_an_empty_prediction_with_its_reason(app, fake_llm):
    client = app.test_client()
    texts = [*BROKEN, "a fine ticket"]
    body = {"tasks": [{"id": i, "data": {"text": t}} for i, t in enumerate(texts)],
            "label_config": THREE_CONTROLS_CONFIG, "project": "faults.3"}  # fmt: skip
    response = client.post("/predict", json=body)
    assert response.status_code == 200, response.get_data(as_text=True)
    results = response.get_json()["results"]
    assert len(results) == len(texts)
    for text, prediction in zip(texts, results, strict=True):
        if text in BROKEN:
            assert prediction == [] or prediction.get("result") == [], (text, prediction)
        else:
            assert prediction["result"], "the healthy task in the same batch must still be answered"

    predictor = app.extensions["services"].predictor
    policy = app.extensions["services"].store.current("faults.3")
    got = predictor.predict_many(policy, parse_label_config(THREE_CONTROLS_CONFIG), list(BROKEN))
    assert [p.error.reason for p in got] == [reason for _, reason in BROKEN.values()]
    assert all(p.error.detail or p.error.reason.answered for p in got)  # LLM failures say what went wrong

    metrics = client.get("/metrics").get_data(as_text=True)
    counted = {reason: 0 for _, reason in BROKEN.values()}
    for _, reason in BROKEN.values():
        counted[reason] += 1
    for reason, n in counted.items():
        line = f'lsml_prediction_failures_total{{project="faults.3",reason="{reason.value}"}} {float(n)}'
        assert line in metrics, f"{reason} must be counted {n} time(s) after the first /predict"


def test_a_single_broken_task_answers_200_not_500(app):
    """The single-task /predict (Label Studio's labeling stream) is where a provider fault used to surface as 500."""
    client = app.test_client()
    for marker in BROKEN:
        body = {"tasks": [{"id": 1, "data": {"text": marker}}], "label_config": THREE_CONTROLS_CONFIG}
        response = client.post("/predict", json=body)
        assert response.status_code == 200, (marker, response.get_data(as_text=True))
        assert response.get_json()["results"] in ([], [[]]) or response.get_json()["results"][0]["result"] == []
