"""Policy answer modes (llm, ranker, cascade) through the real predictor against a scripted LLM over HTTP: who
answers, what the LLM is offered, what it costs, and how the new fields enter (or stay out of) a version."""

from __future__ import annotations

import hashlib
import json

import pytest

from optimizer.labelstudio.labelconfig import parse_label_config
from optimizer.learning.budget import Budget
from optimizer.learning.evaluation import Evaluator
from optimizer.learning.gold import GoldItem, synth_config
from optimizer.serving.llm import LLMClient, LLMConfig
from optimizer.serving.modes import Mode, RankerKind, Source
from optimizer.serving.policy import Demo, Policy
from optimizer.serving.predictor import Predictor
from optimizer.serving.ranking import cache
from testkit.fakellm import FakeLLM, keyword_responder, response_schema
from testkit.scripted import make_gold

LABELS = tuple(f"label{i:02d}" for i in range(12))
SCHEMA = parse_label_config(synth_config(LABELS, multiple=False))
POOL = tuple(Demo(item.input, dict(item.answer)) for item in make_gold(96, LABELS))
# Held-out texts: half carry their label's word twice, half one word of their label and one of another (unsure).
HELD = make_gold(120, LABELS)[96:108] + [
    GoldItem(f"m{i}", f"request m{i}: {LABELS[i % 12]} {LABELS[(i + 5) % 12]} please", {"label": [LABELS[i % 12]]})
    for i in range(12)
]
BASE = Policy("Label the request.", POOL, demo_k=2)


@pytest.fixture(autouse=True)
def fresh_rankers():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def llm():
    with FakeLLM(keyword_responder) as fake:
        yield fake, LLMClient(LLMConfig(base_url=fake.base_url, model="fake", max_retries=0))


def enums(body: dict) -> list[str]:
    return response_schema(body)["properties"]["label"]["enum"]


def test_old_versions_keep_their_ids():
    """The new fields enter the hashed content only when they differ from their defaults."""
    policy = Policy("Label it.", (Demo("x", {"c": ["a"]}),), demo_k=1, narrow_k=3)
    canonical = json.dumps(
        {"instruction": "Label it.", "demos": [{"input": "x", "output": {"c": ["a"]}}], "demo_k": 1, "narrow_k": 3},
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    assert policy.version == "pv-" + hashlib.sha256(canonical.encode()).hexdigest()[:12]
    assert set(policy.content()) == {"instruction", "demos", "demo_k", "narrow_k"}
    # A ranker that neither answers nor narrows changes nothing, so it is not part of what answers.
    assert Policy("Label it.", ranker=RankerKind.LINEAR).version == Policy("Label it.").version


def test_every_learned_field_changes_the_version_and_survives_a_round_trip():
    variants = [
        BASE,
        Policy(BASE.instruction, POOL, 2, mode=Mode.RANKER, ranker=RankerKind.LINEAR),
        Policy(BASE.instruction, POOL, 2, mode=Mode.RANKER, ranker=RankerKind.NEIGHBOURS),
        Policy(BASE.instruction, POOL, 2, mode=Mode.CASCADE, ranker=RankerKind.LINEAR, tau=0.5),
        Policy(BASE.instruction, POOL, 2, mode=Mode.CASCADE, ranker=RankerKind.LINEAR, tau=0.6),
        Policy(BASE.instruction, POOL, 2, mode=Mode.CASCADE, ranker=RankerKind.LINEAR, tau=0.6, hide_demos=True),
        Policy(BASE.instruction, POOL, 2, narrow_k=3, ranker=RankerKind.LINEAR),
        Policy(BASE.instruction, POOL, 2, narrow_k=3),
    ]
    assert len({p.version for p in variants}) == len(variants)
    for policy in variants:
        again = Policy.from_json(policy.to_json())
        assert again == policy and again.version == policy.version
        assert isinstance(again.mode, Mode) and (again.ranker is None or isinstance(again.ranker, RankerKind))


@pytest.mark.parametrize(
    ("fields", "message"),
    [({"mode": Mode.RANKER}, "needs a ranker"), ({"tau": 1.5, "mode": "cascade", "ranker": "linear"}, "tau")],
)
def test_invalid_learned_fields_are_refused(fields, message):
    with pytest.raises(ValueError, match=message):
        Policy("x", **fields)
    with pytest.raises(ValueError):
        Policy.from_dict({"instruction": "x", "mode": "oracle"})


def test_ranker_mode_answers_without_the_llm_and_scores_its_calibrated_confidence(llm):
    fake, client = llm
    policy = Policy(BASE.instruction, POOL, 2, mode=Mode.RANKER, ranker=RankerKind.LINEAR)
    predictions = Predictor(client).predict_many(policy, SCHEMA, [item.input for item in HELD])
    assert fake.requests == []
    ranker = cache.ranker_for(RankerKind.LINEAR, SCHEMA, SCHEMA.choices[0], POOL)
    for prediction, item in zip(predictions, HELD, strict=True):
        ranking = ranker.rank(item.input)
        assert prediction.source is Source.RANKER and prediction.error is None
        assert prediction.choices == {"label": list(ranking.answer)}
        assert prediction.score == pytest.approx(ranking.confidence) and 0 < prediction.score < 1
    for prediction, item in zip(predictions, HELD, strict=True):
        words = set(item.input.split()) & set(LABELS)
        if len(words) == 1:  # a text with its label's word alone is answered right
            assert prediction.choices["label"] == item.answer["label"]
        else:  # an ambiguous one by one of the two labels it names
            assert prediction.choices["label"][0] in words


def test_a_cascade_sends_only_unsure_inputs_to_the_llm_among_the_rankers_top_k(llm):
    fake, client = llm
    ranker = cache.ranker_for(RankerKind.LINEAR, SCHEMA, SCHEMA.choices[0], POOL)
    texts = [item.input for item in HELD]
    confidences = sorted(ranker.rank(t).confidence for t in texts)
    tau = (confidences[len(confidences) // 2 - 1] + confidences[len(confidences) // 2]) / 2  # about half are sure
    policy = Policy(BASE.instruction, POOL, 2, mode=Mode.CASCADE, ranker=RankerKind.LINEAR, tau=tau, narrow_k=3)
    predictor = Predictor(client)
    unsure = [t for t in texts if ranker.rank(t).confidence < policy.tau]
    assert 0 < predictor.llm_calls(policy, SCHEMA, texts) == len(unsure) < len(texts)
    predictions = predictor.predict_many(policy, SCHEMA, texts)
    assert len(fake.requests) == len(unsure)
    asked = {body["messages"][-1]["content"].split("\n\nCandidate labels")[0]: body for body in fake.requests}
    assert set(asked) == set(unsure)
    for text, prediction in zip(texts, predictions, strict=True):
        ranking = ranker.rank(text)
        if text in asked:
            assert prediction.source is Source.LLM
            assert enums(asked[text]) == list(ranking.top(3))  # the LLM chooses among the ranker's top 3
            assert sum(m["role"] == "assistant" for m in asked[text]["messages"]) == 2  # with its 2 demos
        else:
            assert prediction.source is Source.RANKER and prediction.score >= policy.tau


def test_a_cascade_without_demos_shows_the_llm_none_but_still_learns_from_the_pool(llm):
    fake, client = llm
    policy = Policy(BASE.instruction, POOL, 2, mode=Mode.CASCADE, ranker=RankerKind.LINEAR, tau=1.0, narrow_k=3)
    Predictor(client).predict(policy, SCHEMA, HELD[0].input)
    hidden = Policy(BASE.instruction, POOL, 2, mode=Mode.CASCADE, ranker=RankerKind.LINEAR, tau=1.0, narrow_k=3,
                    hide_demos=True)  # fmt: skip
    Predictor(client).predict(hidden, SCHEMA, HELD[0].input)
    shown, none = fake.requests
    assert sum(m["role"] == "assistant" for m in shown["messages"]) == 2
    assert [m["role"] for m in none["messages"]] == ["system", "user"]
    assert enums(shown) == enums(none) and len(enums(none)) == 3


def test_llm_mode_with_a_ranker_narrows_by_it(llm):
    fake, client = llm
    policy = Policy(BASE.instruction, POOL, 2, narrow_k=4, ranker=RankerKind.NEIGHBOURS)
    prediction = Predictor(client).predict(policy, SCHEMA, HELD[0].input)
    ranking = cache.ranker_for(RankerKind.NEIGHBOURS, SCHEMA, SCHEMA.choices[0], POOL).rank(HELD[0].input)
    assert prediction.source is Source.LLM
    assert enums(fake.requests[0]) == list(ranking.top(4))


def test_a_config_with_free_text_falls_back_to_the_llm(llm):
    fake, client = llm
    config = synth_config(LABELS, multiple=False).replace("</View>", '  <TextArea name="why" toName="text"/>\n</View>')
    schema = parse_label_config(config)
    policy = Policy(BASE.instruction, POOL, 2, mode=Mode.RANKER, ranker=RankerKind.LINEAR)
    prediction = Predictor(client).predict(policy, schema, HELD[0].input)
    assert len(fake.requests) == 1 and prediction.source is Source.LLM


def test_the_evaluator_plans_exactly_the_calls_a_cascade_makes(llm):
    fake, client = llm
    items = [GoldItem(f"h{i}", item.input, item.answer) for i, item in enumerate(HELD)]
    budget = Budget(1000)
    with budget.attach(client):
        evaluator = Evaluator(Predictor(client, cache={}), SCHEMA, budget)
        for tau, mode in ((0.0, Mode.RANKER), (0.5, Mode.CASCADE), (1.0, Mode.CASCADE)):
            policy = Policy(BASE.instruction, POOL, 2, mode=mode, ranker=RankerKind.LINEAR, tau=tau, narrow_k=3)
            planned, before = evaluator.cost(policy, items), len(fake.requests)
            scored = evaluator.evaluate(policy, items)
            assert len(fake.requests) - before == planned
            assert scored.llm_per_100 == pytest.approx(100 * planned / len(items))
            assert evaluator.cost(policy, items) == 0  # everything is cached now
        assert planned == len(items)  # tau 1.0: the ranker is never that sure
