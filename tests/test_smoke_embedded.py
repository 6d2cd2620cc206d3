"""Smoke test with the real embedded model: whatever SmolLM2 says, only labels from the set come out."""

import pytest

from _wsgi import create_app
from optimizer.labelstudio.labelconfig import parse_label_config
from optimizer.runtime.versions import policy_version
from optimizer.serving.policy import Demo, Policy
from testkit.constants import NER_CONFIG, REWARD_CONFIG, SUPPORT_CONFIG, THREE_CONTROLS_CONFIG

pytestmark = [pytest.mark.llm, pytest.mark.slow]

CASES = [
    (SUPPORT_CONFIG, [{"dialogue": [{"author": "Customer", "text": "My invoice is wrong, I was charged twice."}]},
                      {"dialogue": [{"author": "Customer", "text": "Hello! Where is my order?"}]}]),
    (REWARD_CONFIG, [{"prompt": "What is 2+2?", "response": "4"},
                     {"prompt": "Capital of France?", "response": "Rome"}]),
    (THREE_CONTROLS_CONFIG, [{"text": "The parcel is late again and nobody answers. Refund me today!"}]),
]  # fmt: skip


@pytest.mark.parametrize("config, data", CASES)
def test_every_label_is_in_its_control_set(make_settings, embedded_llm, config, data):
    settings = make_settings(llm_base_url=embedded_llm.base_url, llm_model="smollm2-135m", llm_provider="llamacpp",
                             llm_max_tokens=96, llm_timeout=120)  # fmt: skip
    client = create_app(settings).test_client()
    response = client.post("/predict", json={"tasks": [{"id": i, "data": d} for i, d in enumerate(data)],
                                             "label_config": config, "project": "smoke.1"})  # fmt: skip
    assert response.status_code == 200
    schema = parse_label_config(config)
    results = response.get_json()["results"]
    assert len(results) == len(data)
    chosen = 0
    for result in results:
        if result == []:  # no answer for this task: Label Studio stores nothing and asks again
            continue
        assert 0.0 <= result["score"] <= 1.0
        for item in result["result"]:
            control = schema.choice(item["from_name"])
            if control is None:
                assert item["type"] == "textarea"
                continue
            labels = item["value"]["choices"]
            assert set(labels) <= set(control.labels)
            assert control.multiple or len(labels) == 1
            chosen += 1
    assert chosen > 0  # the real model produced at least one usable answer
    usage = client.application.extensions["services"].labeller.usage.snapshot()
    assert usage["calls"] >= len(data) and usage["completion_tokens"] > 0


def test_server_listens_on_its_own_port_whatever_the_environment_says(monkeypatch):
    """llama_cpp.server lets bare PORT/HOST variables override its command line; `make run` exports the backend's
    PORT=9090, so the launcher must keep them away from it."""
    from testkit.embedded import EmbeddedLLM, find_server_python
    from testkit.redisserver import free_port
    from tests.support.gating import need

    python = find_server_python()
    need(python is not None, "the embedded LLM venv (.venv-llm) is not built; run `make llm`")
    decoy = free_port()
    monkeypatch.setenv("PORT", str(decoy))
    monkeypatch.setenv("HOST", "0.0.0.0")
    server = EmbeddedLLM(python).start(timeout=90)
    try:
        assert server.port != decoy
        assert server.proc is not None and server.proc.poll() is None
    finally:
        server.stop()


def _mentions(*pairs: str) -> dict:
    return {"ner": [{"text": pairs[i], "label": pairs[i + 1]} for i in range(0, len(pairs), 2)]}


NER_DEMOS = (
    Demo("Maria Garcia joined Google in Madrid.", _mentions("Maria Garcia", "PER", "Google", "ORG", "Madrid", "LOC")),
    Demo("Apple opened a store in Paris.", _mentions("Apple", "ORG", "Paris", "LOC")),
)


def test_ner_spans_from_the_real_model_sit_exactly_on_the_task_text(make_settings, embedded_llm):
    """Whatever SmolLM2 names, every span Label Studio would get is the task text at its offsets, labels in the set."""
    settings = make_settings(llm_base_url=embedded_llm.base_url, llm_model="smollm2-135m", llm_provider="llamacpp",
                             llm_max_tokens=96, llm_timeout=120)  # fmt: skip
    app = create_app(settings)
    policy = Policy("Find the people (PER), organisations (ORG) and places (LOC) named in the text.", NER_DEMOS)
    assert app.extensions["services"].store.promote("ner.1", policy, None).ok
    texts = ["John Smith works for Microsoft in London.", "Angela Merkel visited Tōkyō with Siemens. 🚀"]
    response = app.test_client().post(
        "/predict",
        json={"tasks": [{"id": i, "data": {"text": t}} for i, t in enumerate(texts)], "label_config": NER_CONFIG,
              "project": "ner.1"},
    )  # fmt: skip
    assert response.status_code == 200
    results = response.get_json()["results"]
    assert len(results) == len(texts) and all(policy_version(r["model_version"]) == policy.version for r in results)
    spans = 0
    for text, result in zip(texts, results, strict=True):
        for item in result["result"]:
            value = item["value"]
            assert item["type"] == "labels" and value["labels"][0] in {"PER", "ORG", "LOC"}
            assert value["text"] == text[value["start"] : value["end"]] and value["text"].strip()
            spans += 1
    assert spans > 0  # the real model named at least one entity that is in the text


TEN_LABELS_CONFIG = """<View><Text name="email" value="$text"/>
 <Choices name="intent" toName="email" choice="multiple">
   <Choice value="Greeting"/><Choice value="Account_Verification"/><Choice value="Technical_Support"/>
   <Choice value="Information_Request"/><Choice value="Billing"/><Choice value="Complaint"/>
   <Choice value="Feedback"/><Choice value="Cancellation"/><Choice value="Order_Status"/><Choice value="Other"/>
 </Choices></View>"""


def test_ten_label_answer_closes_and_a_cut_answer_keeps_its_complete_labels(embedded_llm):
    """maxItems and the schema-derived cap let the real model finish; cutting it short still keeps whole labels."""
    from optimizer.serving.llm import LLMClient, LLMConfig
    from optimizer.serving.parsing import parse_answer
    from optimizer.serving.policy import Policy
    from optimizer.serving.prompting import answer_token_cap, build_messages, json_schema

    schema = parse_label_config(TEN_LABELS_CONFIG)
    llm = LLMClient(LLMConfig(base_url=embedded_llm.base_url, model="smollm2-135m", response_format="llama_schema",
                              timeout=120, logprobs=False))  # fmt: skip
    text = ("Hello, I was billed twice for my order, it has not arrived, your support never answers, "
            "and I want to cancel my account and complain about the technical problems on your site.")  # fmt: skip
    messages = build_messages(Policy("Pick every intent that applies; most emails have several."), schema, text)
    full = llm.complete(messages, json_schema(schema), answer_token_cap(schema, 0))
    assert not full.truncated
    labels = parse_answer(schema, full.text).choices["intent"]
    assert 1 <= len(labels) <= 10 and len(set(labels)) == len(labels)

    cut = llm.complete(messages, json_schema(schema), full.completion_tokens - 1)
    assert cut.truncated
    parsed = parse_answer(schema, cut.text)
    kept = parsed.choices["intent"]
    assert parsed.salvaged and kept and kept == labels[: len(kept)]


def test_single_task_right_after_a_timed_out_batch_answers_in_normal_time(make_settings, embedded_llm):
    """Abandoned calls stop consuming the one-at-a-time server: the deadline closes them, and llama.cpp's server
    skips a queued request whose client is gone. Before, the next task waited for the whole abandoned batch."""
    import time

    def app(deadline: float):
        return create_app(make_settings(
            llm_base_url=embedded_llm.base_url, llm_model="smollm2-135m", llm_provider="llamacpp",
            llm_concurrency=4, llm_global_concurrency=4, predict_deadline=deadline, llm_timeout=120,
        )).test_client()  # fmt: skip

    email = "Hello team, my last invoice charged me twice and the parcel is late again. " * 4

    def predict(client, n: int) -> tuple[float, list]:
        tasks = [{"data": {"text": f"{i}: {email}"}} for i in range(n)]
        started = time.perf_counter()
        response = client.post("/predict", json={"tasks": tasks, "label_config": THREE_CONTROLS_CONFIG})
        assert response.status_code == 200
        return time.perf_counter() - started, response.get_json()["results"]

    predict(app(120), 1)  # warm the server's prompt cache and grammar for this config
    normal, _ = predict(app(120), 1)
    deadline = max(3.0, 3 * normal)  # a 12-task batch needs ~12 x normal on a one-at-a-time server
    client = app(deadline)
    batch_time, results = predict(client, 12)
    assert results.count([]) > 0 and batch_time < deadline + 2.0  # the deadline cut the batch
    # The next task gets a generous deadline of its own: what is measured is how long it waits, not whether a cut
    # at ``deadline`` hides the wait (an empty answer at the cut would pass the time bound).
    after, (answer,) = predict(app(120), 1)
    print(f"\nsingle task {normal:.2f} s; batch cut at {batch_time:.2f} s; next single task {after:.2f} s")
    assert answer and after < 2 * normal + 3.0, (normal, after)
