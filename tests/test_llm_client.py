"""The LLM client against a scripted OpenAI-compatible server over real HTTP."""

import json
import threading

import pytest

from optimizer.serving.llm import LLMClient, LLMConfig, ResponseFormat
from optimizer.serving.llm_errors import LLMAuthError, LLMRequestError, LLMServerError, LLMTimeout
from testkit.fakellm import FakeLLM, Reply

MESSAGES = [{"role": "system", "content": "s"}, {"role": "user", "content": "hello"}]
SCHEMA = {"type": "object", "properties": {"c": {"type": "string", "enum": ["a", "b"]}}}


def client_for(fake: FakeLLM, **overrides) -> tuple[LLMClient, list[float]]:
    slept: list[float] = []
    config = LLMConfig(base_url=fake.base_url, model="fake", api_key="sk-test-key", backoff=0.01, **overrides)
    return LLMClient(config, sleep=slept.append), slept


def test_answer_tokens_and_logprobs(fake_llm):
    fake_llm.responder = lambda body: Reply('{"c": "a"}')
    client, _ = client_for(fake_llm)
    completion = client.complete(MESSAGES, SCHEMA)
    assert json.loads(completion.text) == {"c": "a"}
    assert completion.tokens and "".join(t for t, _ in completion.tokens) == completion.text
    usage = client.usage.snapshot()
    assert usage["calls"] == 1 and usage["completion_tokens"] == completion.completion_tokens > 0
    assert usage["prompt_tokens"] > 0
    assert {k.lower(): v for k, v in fake_llm.headers[-1].items()}["authorization"] == "Bearer sk-test-key"


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_are_retried_then_succeed(fake_llm, status):
    fake_llm.faults.extend([Reply(status=status), Reply(status=status)])
    client, slept = client_for(fake_llm, max_retries=2, response_format="llama_schema")
    assert client.complete(MESSAGES, SCHEMA).text
    assert len(fake_llm.requests) == 3 and len(slept) == 2
    assert client.usage.snapshot()["retries"] == 2


def test_retries_are_bounded(fake_llm):
    fake_llm.faults.extend([Reply(status=503)] * 5)
    client, slept = client_for(fake_llm, max_retries=2, response_format="llama_schema")
    with pytest.raises(LLMServerError):
        client.complete(MESSAGES, SCHEMA)
    assert len(fake_llm.requests) == 3 and len(slept) == 2


def test_rate_limit_honours_retry_after(fake_llm):
    fake_llm.faults.append(Reply(status=429, headers={"Retry-After": "3"}))
    client, slept = client_for(fake_llm)
    client.complete(MESSAGES)
    assert slept == [3.0]


@pytest.mark.parametrize("header", ["soon", "nan", "inf", "Wed, 99 Foo 2026 99:99:99 GMT", "-"])
def test_a_retry_after_that_is_neither_seconds_nor_a_date_falls_back_to_backoff(fake_llm, header):
    fake_llm.faults.append(Reply(status=429, headers={"Retry-After": header}))
    client, slept = client_for(fake_llm)
    assert client.complete(MESSAGES).text
    assert len(slept) == 1 and 0 < slept[0] <= 8.0


@pytest.mark.parametrize("status, error", [(401, LLMAuthError), (403, LLMAuthError), (400, LLMRequestError)])
def test_auth_and_request_errors_are_not_retried(fake_llm, status, error):
    fake_llm.faults.extend([Reply(status=status)] * 3)
    client, slept = client_for(fake_llm, response_format="llama_schema", logprobs=False)
    with pytest.raises(error) as info:
        client.complete(MESSAGES, SCHEMA)
    assert len(fake_llm.requests) == 1 and slept == []
    assert "sk-test-key" not in str(info.value)


def test_timeouts_are_retried(fake_llm):
    fake_llm.faults.append(Reply('{"c": "late"}', delay=1.0))
    fake_llm.responder = lambda body: Reply('{"c": "a"}')
    client, slept = client_for(fake_llm, timeout=0.3, max_retries=1)
    assert client.complete(MESSAGES).text == '{"c": "a"}'
    assert len(slept) == 1 and len(fake_llm.requests) == 2


def test_timeout_error_when_retries_run_out(fake_llm):
    fake_llm.delay = 1.0
    client, _ = client_for(fake_llm, timeout=0.2, max_retries=0)
    with pytest.raises(LLMTimeout):
        client.complete(MESSAGES)


def test_falls_back_from_openai_schema_to_llama_schema(fake_llm):
    fake_llm.reject_json_schema = True
    client, slept = client_for(fake_llm)
    client.complete(MESSAGES, SCHEMA)
    client.complete(MESSAGES, SCHEMA)
    kinds = [(r.get("response_format") or {}).get("type") for r in fake_llm.requests]
    assert kinds == ["json_schema", "json_object", "json_object"]
    assert fake_llm.requests[-1]["response_format"]["schema"] == SCHEMA
    assert client.response_format == "llama_schema" and slept == []


def test_refused_logprobs_are_dropped_once(fake_llm):
    def responder(body):
        if body.get("logprobs"):
            return Reply(status=400, error="logprobs are not supported by this model")
        return Reply('{"c": "b"}')

    fake_llm.responder = responder
    client, _ = client_for(fake_llm, response_format="json_schema")
    assert client.complete(MESSAGES, SCHEMA).tokens is None
    client.complete(MESSAGES, SCHEMA)
    assert [bool(r.get("logprobs")) for r in fake_llm.requests] == [True, False, False]


def test_concurrency_is_bounded_per_client(fake_llm):
    fake_llm.delay = 0.1
    client, _ = client_for(fake_llm, concurrency=3)
    threads = [threading.Thread(target=client.complete, args=(MESSAGES,)) for _ in range(9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert fake_llm.max_active == 3


def test_demos_are_chosen_once_per_item_and_score_the_answer(fake_llm, monkeypatch):
    """Without logprobs the score uses the retrieved demos: the same ones the prompt showed, chosen once."""
    from optimizer.labelstudio.labelconfig import parse_label_config
    from optimizer.serving import predictor as predictor_module
    from optimizer.serving.policy import Demo, Policy
    from testkit.constants import THREE_CONTROLS_CONFIG

    calls = []
    real = predictor_module.select_demos
    monkeypatch.setattr(predictor_module, "select_demos", lambda *a: calls.append(a) or real(*a))
    fake_llm.responder = lambda body: Reply('{"topics": ["billing"], "sentiment": "negative", "urgency": "high"}',
                                            logprob=None)  # fmt: skip
    demos = (
        Demo("refund my invoice", {"topics": ["billing"], "sentiment": "negative", "urgency": "high"}),
        Demo("where is my parcel", {"topics": ["shipping"], "sentiment": "neutral", "urgency": "low"}),
    )
    client, _ = client_for(fake_llm)
    prediction = predictor_module.Predictor(client).predict(
        Policy("Label it.", demos, demo_k=1), parse_label_config(THREE_CONTROLS_CONFIG), "refund the invoice please"
    )
    assert len(calls) == 1
    assert "refund my invoice" in json.dumps(fake_llm.requests[-1]["messages"])
    # format quality 1.0 (strict JSON) x demo agreement (1 + 1) / (1 + 1): the retrieved demo agrees on billing.
    assert prediction.control_scores["topics"] == 1.0


def test_a_dead_endpoint_stops_a_batch_run_but_not_the_web_service():
    from optimizer.serving.llm_errors import LLMConnectionError, LLMUnavailable
    from testkit.redisserver import free_port

    url = f"http://127.0.0.1:{free_port()}/v1"
    batch = LLMClient(LLMConfig(base_url=url, model="m", max_retries=0, fail_fast_after=2), sleep=lambda s: None)
    with pytest.raises(LLMUnavailable, match="cannot use the LLM at"):
        batch.probe()
    with pytest.raises(LLMConnectionError):
        batch.complete(MESSAGES)
    with pytest.raises(LLMUnavailable, match="2 call"):
        batch.complete(MESSAGES)
    web = LLMClient(LLMConfig(base_url=url, model="m", max_retries=0), sleep=lambda s: None)
    for _ in range(4):  # /predict keeps answering with empty predictions, each counted
        with pytest.raises(LLMConnectionError):
            web.complete(MESSAGES)


def test_probe_accepts_a_server_without_a_models_route(fake_llm):
    client, _ = client_for(fake_llm)
    client.probe()  # the scripted server has no GET /models: it answers, so something is listening
    assert client.complete(MESSAGES).text


def test_a_misspelt_response_format_is_refused_where_it_is_set():
    """It used to fall back to discovery silently; now the config itself says what is allowed."""
    with pytest.raises(ValueError, match="response_format must be one of auto, json_schema, llama_schema, text"):
        LLMConfig(base_url="http://127.0.0.1:1/v1", model="m", response_format="json-schema")
    assert LLMConfig(base_url="http://127.0.0.1:1/v1", model="m", response_format="text").response_format is (
        ResponseFormat.TEXT
    )
