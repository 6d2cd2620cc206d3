"""The loop's parts on their own: proposal checks, the promotion rule, the pool, the budget guard, feedback."""

from __future__ import annotations

import pytest

from optimizer.labelstudio.labelconfig import parse_label_config
from optimizer.learning.budget import Budget, BudgetExhausted
from optimizer.learning.candidates import demo_variants
from optimizer.learning.evaluation import Evaluation, score_prediction
from optimizer.learning.feedback import aggregate, as_text
from optimizer.learning.gate import GateRule, minibatch_gate, promotion
from optimizer.learning.gold import GoldItem, synth_config
from optimizer.learning.pool import Pool
from optimizer.learning.proposer import GoldText, check, clean, parse_guide
from optimizer.serving.llm import LLMClient, LLMConfig
from optimizer.serving.policy import Policy
from optimizer.serving.predictor import FailureReason, Prediction, Predictor
from testkit.fakellm import FakeLLM
from testkit.scripted import LABELS, make_gold

SCHEMA = parse_label_config(synth_config(LABELS, multiple=False))
GOLD = make_gold(40)


def evaluation(rewards: list[float], version: str = "pv-x") -> Evaluation:
    """An evaluation whose item i has reward rewards[i] (right or wrong single labels)."""
    items = tuple(GoldItem(f"i{n}", f"text {n}", {"label": ["alpha"]}) for n in range(len(rewards)))
    preds = tuple(Prediction(choices={"label": ["alpha" if r else "bravo"]}) for r in rewards)
    scores = tuple(score_prediction(SCHEMA, p, i) for p, i in zip(preds, items, strict=True))
    return Evaluation(version, items, preds, scores)


# --- proposals --------------------------------------------------------------------------------------------------


def test_clean_strips_wrappers():
    assert clean("```\nBe precise.\n```") == "Be precise."
    assert clean('"Be precise."') == "Be precise."
    assert clean("Improved instruction: Be precise.") == "Be precise."
    assert clean("  ") == ""


def test_check_reasons():
    gold = GoldText(GOLD)
    parent = "Label the request."
    assert check("Label the request carefully.", parent, gold, 100) is None
    assert check("", parent, gold, 100) == "empty"
    assert check(" Label  the request. ", parent, gold, 100) == "unchanged"
    assert check("x" * 101, parent, gold, 100).startswith("too long")
    assert "output format" in check('Reply in JSON: {"label": "alpha"}', parent, gold, 100)
    assert "output format" in check("Use ```yaml``` blocks.", parent, gold, 100)
    long_text = "i really need to move my savings to another bank account today"
    gold_long = GoldText([GoldItem("a", long_text, {"label": ["alpha"]})])
    assert check("Example: move my savings to another bank account.", parent, gold_long, 500) == (
        "pastes gold text verbatim"
    )
    # A short gold item pasted whole is caught too; a run of words the parent already had is not pasting.
    assert check("Note " + GOLD[0].input, parent, gold, 500) == "pastes gold text verbatim"
    assert check("Label the request. " + "to another bank", "to another bank account today", gold_long, 500) is None


def test_parse_guide_keeps_only_known_labels():
    text = "Here you go:\n- Alpha: asks about a\n2. BRAVO: about b\nzulu: unknown\ncharlie:\nalpha: again"
    assert parse_guide(text, LABELS) == ["alpha: asks about a", "bravo: about b"]


# --- gate ------------------------------------------------------------------------------------------------------


def test_minibatch_gate_needs_a_strict_gain():
    assert minibatch_gate(evaluation([1, 0, 0]), evaluation([1, 1, 0])) == (True, 1.0)
    assert minibatch_gate(evaluation([1, 0, 0]), evaluation([0, 1, 0]))[0] is False


def test_promotion_rule():
    rule = GateRule()
    base = evaluation([0] * 20 + [1] * 20)
    same = promotion(base, evaluation([0] * 20 + [1] * 20), rule, "s")
    assert not same.promote and "no gain" in same.reason
    one = promotion(base, evaluation([1] + [0] * 19 + [1] * 20), rule, "s")
    assert not one.promote and "too few items won" in one.reason
    noisy = promotion(base, evaluation([1] * 6 + [0] * 14 + [0] * 4 + [1] * 16), rule, "s")
    assert not noisy.promote and "within noise" in noisy.reason and noisy.wins == 6 and noisy.losses == 4
    clear = promotion(base, evaluation([1] * 10 + [0] * 10 + [1] * 20), rule, "s")
    assert clear.promote and clear.wins == 10 and clear.losses == 0 and clear.p_value == 0.0
    assert promotion(base, evaluation([1] * 6 + [0] * 14 + [0] * 4 + [1] * 16), rule, "s") == noisy  # seeded


# --- pool ------------------------------------------------------------------------------------------------------


def test_pool_selects_only_non_dominated_members_and_keeps_the_champion():
    pool = Pool(size=2)
    a, b, c = Policy("a"), Policy("b"), Policy("c")
    pool.add(a, evaluation([1, 0, 0, 0]), champion=a.version)
    pool.add(b, evaluation([1, 1, 0, 0]), champion=a.version)  # dominates a
    weights = dict(zip([m.policy.version for m in pool.members], pool.weights(), strict=True))
    assert weights[a.version] == 0 and weights[b.version] == 2
    pool.add(c, evaluation([0, 0, 1, 1]), champion=a.version)  # full: the weakest non-champion goes
    assert {m.policy.version for m in pool.members} == {a.version, c.version}


# --- budget ----------------------------------------------------------------------------------------------------


def test_budget_guard_refuses_requests_beyond_the_budget_and_the_cap():
    with FakeLLM() as server:
        llm = LLMClient(LLMConfig(base_url=server.base_url, model="fake", max_retries=0))
        with Budget(3).attach(llm) as budget:
            budget.cap(1)
            assert budget.remaining == 1
            llm.complete([{"role": "user", "content": "one"}])
            with pytest.raises(BudgetExhausted):
                llm.complete([{"role": "user", "content": "two"}])
            budget.cap(None)
            llm.complete([{"role": "user", "content": "three"}])
            llm.complete([{"role": "user", "content": "four"}])
            with pytest.raises(BudgetExhausted):
                llm.complete([{"role": "user", "content": "five"}])
        assert len(server.requests) == budget.spent == 3 and budget.refused == 2
        llm.complete([{"role": "user", "content": "detached"}])  # no guard after detach
        assert len(server.requests) == 4


def test_budget_wall_time_uses_its_clock():
    now = [100.0]
    budget = Budget(10, seconds=5, clock=lambda: now[0])
    assert budget.affords(10) and not budget.expired
    now[0] = 105.0
    assert budget.expired and not budget.affords(1)


def test_budget_refusal_makes_an_evaluation_incomplete():
    with FakeLLM() as server:
        llm = LLMClient(LLMConfig(base_url=server.base_url, model="fake", concurrency=1))
        from optimizer.learning.evaluation import Evaluator

        with Budget(5).attach(llm) as budget:
            evaluator = Evaluator(Predictor(llm), SCHEMA, budget)
            assert evaluator.evaluate(Policy("x"), GOLD[:6]) is None  # unaffordable: nothing sent
            assert len(server.requests) == 0
            assert evaluator.evaluate(Policy("x"), GOLD[:5]) is not None
            assert evaluator.cost(Policy("x"), GOLD[:6]) == 1


# --- feedback and demo candidates -------------------------------------------------------------------------------


def test_feedback_names_confusions_and_worst_items():
    items = tuple(GOLD[:4])
    preds = (
        Prediction(choices={"label": ["bravo"]}),
        Prediction(choices={"label": ["bravo"]}),
        Prediction.failed(FailureReason.LLM_ERROR, "timeout"),
        Prediction(raw="no idea"),
    )
    scores = tuple(score_prediction(SCHEMA, p, i) for p, i in zip(preds, items, strict=True))
    report = aggregate(SCHEMA, Evaluation("v", items, preds, scores))
    assert report["llm_errors"] == 1 and report["parse_failures"] == 1
    label = report["controls"]["label"]
    assert ("alpha", "bravo", 1) in label["confusions"]
    assert dict(label["spurious"])["bravo"] == 1
    text = as_text(report)
    assert "alpha → bravo (1x)" in text and "Worst examples:" in text and GOLD[2].input in text


def test_demo_variants_from_each_kind_of_parent():
    train = GOLD[:20]
    plain = Policy("p")
    kinds = [k for k, _ in demo_variants(plain, SCHEMA, train, demo_k=4, max_k=8, seed=0)]
    assert kinds == ["demos:retrieve k=4", "demos:fixed n=5"]
    retrieved = demo_variants(plain, SCHEMA, train, demo_k=4, max_k=8, seed=0)[0][1]
    assert {d.input for d in retrieved.demos} == {i.input for i in train}
    assert [k for k, _ in demo_variants(retrieved, SCHEMA, train, demo_k=4, max_k=8, seed=0)] == [
        "demos:retrieve k=8",
        "demos:retrieve k=2",
    ]
    fixed = demo_variants(plain, SCHEMA, train, demo_k=4, max_k=8, seed=0)[1][1]
    assert sorted(d.output["label"][0] for d in fixed.demos) == sorted(LABELS)
    assert demo_variants(plain, SCHEMA, [], demo_k=4, max_k=8, seed=0) == []
