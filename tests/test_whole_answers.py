"""Answers that cannot be cut in half: bounded arrays, a token cap from the schema, salvage, typed empty reasons."""

import json

from _wsgi import create_app
from optimizer.labelstudio.labelconfig import parse_label_config
from optimizer.serving.parsing import parse_answer, salvage_object
from optimizer.serving.predictor import FailureReason
from optimizer.serving.prompting import answer_token_cap, json_schema
from testkit.constants import SUPPORT_CONFIG, THREE_CONTROLS_CONFIG
from testkit.fakellm import Reply

THREE = parse_label_config(THREE_CONTROLS_CONFIG)
SUPPORT = parse_label_config(SUPPORT_CONFIG)


def test_multiple_choice_arrays_are_bounded_by_their_label_count():
    schema = json_schema(SUPPORT)
    assert schema["properties"]["intent"]["maxItems"] == 10
    assert json_schema(THREE)["properties"]["topics"]["maxItems"] == 3


def test_token_cap_covers_the_longest_legal_answer_plus_free_text():
    longest = {"topics": ["billing", "shipping", "returns"], "sentiment": "negative", "urgency": "high"}
    cap = answer_token_cap(THREE, free_text_tokens=256)
    assert cap >= len(json.dumps(longest).encode())
    assert cap < 256  # no free-text area: LLM_MAX_TOKENS is not spent on a choices-only config
    # SUPPORT has one free-text answer area (the prompt area is the annotator's, not the model's)
    assert answer_token_cap(SUPPORT, 256) - answer_token_cap(SUPPORT, 0) == 256


def test_truncated_object_keeps_the_complete_labels():
    raw = '{"topics": ["billing", "shipping", "ret'
    assert salvage_object(raw) == {"topics": ["billing", "shipping"]}
    parsed = parse_answer(THREE, raw)
    assert parsed.salvaged and parsed.choices["topics"] == ["billing", "shipping"]
    cut_string = parse_answer(THREE, '{"topics": ["returns"], "sentiment": "nega')
    assert cut_string.choices == {"topics": ["returns"], "sentiment": [], "urgency": []}
    assert salvage_object('{"topics": ') is None and salvage_object("no json here") is None


def test_repeated_labels_are_dropped_before_counting():
    parsed = parse_answer(SUPPORT, '{"intent": ["Billing", "Billing", "Billing", "Greeting", "Billing"]}')
    assert parsed.choices["intent"] == ["Billing", "Greeting"] and parsed.dropped == 0


def test_every_empty_answer_is_typed_counted_and_the_cap_is_sent(make_settings, fake_llm):
    def responder(body):
        text = body["messages"][-1]["content"]
        if "cut-empty" in text:
            return Reply('{"topics": ["bill', finish_reason="length")
        if "cut-some" in text:
            return Reply('{"topics": ["billing", "ship', finish_reason="length")
        if "garbage" in text:
            return Reply("I cannot help with that.")
        return Reply('{"topics": ["shipping"], "sentiment": "neutral", "urgency": "low"}')

    fake_llm.responder = responder
    app = create_app(make_settings(llm_max_tokens=64))
    client = app.test_client()
    texts = ["cut-empty", "cut-some", "garbage", "fine"]
    body = {"tasks": [{"id": i, "data": {"text": t}} for i, t in enumerate(texts)],
            "label_config": THREE_CONTROLS_CONFIG, "project": "whole.7"}  # fmt: skip
    assert client.post("/predict", json=body).status_code == 200
    assert {r["max_tokens"] for r in fake_llm.requests} == {answer_token_cap(THREE, 64)}

    predictor = app.extensions["services"].predictor
    policy = app.extensions["services"].store.current("whole.7")
    got = predictor.predict_many(policy, THREE, texts)
    assert [p.error.reason if p.error else None for p in got] == [
        FailureReason.TRUNCATED, None, FailureReason.UNPARSABLE, None]  # fmt: skip
    assert got[1].salvaged and got[1].choices == {"topics": ["billing"]}

    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'lsml_prediction_failures_total{project="whole.7",reason="truncated"} 1.0' in metrics
    assert 'lsml_prediction_failures_total{project="whole.7",reason="unparsable"} 1.0' in metrics
    assert 'lsml_predictions_salvaged_total{project="whole.7"} 1.0' in metrics
