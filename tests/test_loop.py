"""The optimisation loop against scripted LLMs over real HTTP: gating, learning, determinism, budget and cache."""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest

from optimizer.labelstudio.labelconfig import parse_label_config
from optimizer.learning.budget import Budget
from optimizer.learning.evaluation import Evaluator
from optimizer.learning.gold import GoldItem, synth_config
from optimizer.learning.procedure import LoopConfig, optimize
from optimizer.serving.llm import LLMClient, LLMConfig
from optimizer.serving.policy import Policy
from optimizer.serving.predictor import Predictor
from testkit.constants import THREE_CONTROLS_CONFIG
from testkit.fakellm import FakeLLM, Reply, last_user
from testkit.scripted import (
    LABELS,
    DemoCopier,
    Labeller,
    fixed_proposer,
    instruction_of,
    make_gold,
    share,
    varied_proposer,
)

SCHEMA = parse_label_config(synth_config(LABELS, multiple=False))
INITIAL = Policy("Label the request.")
# These tests are about the LLM loop's mechanics. The scripted gold's words give its labels away, so a learned ranker
# would win every run (tests/test_learned_loop.py tests that); here it is left out.
LLM_ONLY = LoopConfig(learned=False)


def clients(labeller: FakeLLM, proposer: FakeLLM) -> tuple[LLMClient, LLMClient]:
    lab = LLMClient(LLMConfig(base_url=labeller.base_url, model="fake", max_retries=2, backoff=0.0))
    prop = LLMClient(
        LLMConfig(base_url=proposer.base_url, model="fake", response_format="text", logprobs=False, backoff=0.0)
    )
    return lab, prop


def run(labeller, proposer, gold, budget=120, seed=0, **kwargs):
    with FakeLLM(labeller) as lab_server, FakeLLM(proposer) as prop_server:
        lab, prop = clients(lab_server, prop_server)
        kwargs.setdefault("config", LLM_ONLY)
        result = optimize(INITIAL, SCHEMA, gold, lab, prop, budget_calls=budget, seed=seed, **kwargs)
        return result, lab_server.requests, prop_server.requests


def candidates(report: dict) -> list[dict]:
    runs = [report["run"], *report.get("folds", [])]
    return [c for r in runs for step in r["steps"] for c in step.get("candidates", [])]


def without_timing(report: dict) -> dict:
    return {k: v for k, v in report.items() if k != "timing"}


def test_adversarial_proposer_never_promotes_across_20_seeds():
    gold = make_gold(40)
    labeller = Labeller(gold, base=0.6, markers={"WORSE": 0.4})
    validated = 0
    with FakeLLM(labeller) as lab_server, FakeLLM(varied_proposer("Guess. WORSE")) as prop_server:
        lab, prop = clients(lab_server, prop_server)
        for seed in range(20):
            prop_server.reset()
            result = optimize(INITIAL, SCHEMA, gold, lab, prop, budget_calls=80, seed=seed, config=LLM_ONLY)
            assert not result.accepted, f"seed {seed} promoted {result.best.instruction!r}"
            assert result.best.version == INITIAL.version
            assert prop_server.requests, "the proposer was never asked"
            validated += sum(1 for c in candidates(result.report) if "val" in c)
    # Some worse prompts got lucky on a minibatch, so the validation gate really was what stopped them.
    assert validated > 0


def test_learns_from_a_helpful_proposer():
    gold = make_gold(60)
    labeller = Labeller(gold, base=0.4, markers={"CAREFUL": 0.95})
    result, _, _ = run(labeller, fixed_proposer("Read the request twice. CAREFUL"), gold, budget=150, seed=1)
    assert result.accepted
    assert "CAREFUL" in result.best.instruction
    meta = result.best.meta
    assert meta["parent"] == INITIAL.version
    assert meta["test_score"] > meta["initial_test_score"] + 0.2
    assert meta["val_score"] > meta["initial_val_score"]
    promoted = [c for c in candidates(result.report) if c["status"] == "promoted"]
    assert promoted and promoted[0]["decision"]["p_value"] <= 0.05


def test_retrieved_demos_are_chosen_when_they_help_and_never_used_without_demos():
    gold = make_gold(60)
    result, _, _ = run(DemoCopier(gold, base=0.3), fixed_proposer("Label it."), gold, budget=200)
    assert result.accepted and result.best.demo_k > 0
    assert {d.input for d in result.best.demos} <= {i.input for i in gold}
    assert result.report["test"]["best"]["reward"] > result.report["test"]["initial"]["reward"]

    plain, requests, _ = run(
        DemoCopier(gold, base=0.3),
        fixed_proposer("Label it."),
        gold,
        budget=200,
        config=LoopConfig(demos=False, learned=False),
    )
    assert plain.best.demo_k == 0 and not plain.best.demos
    assert not any(m["role"] == "assistant" for body in requests for m in body["messages"])


def test_same_seed_same_report_and_another_seed_differs():
    gold = make_gold(40)

    def once(seed):
        labeller = Labeller(gold, base=0.5, markers={"TRY": 0.55})
        return run(labeller, varied_proposer("TRY this."), gold, budget=90, seed=seed)[0].report

    first, second = once(5), once(5)
    assert json.dumps(without_timing(first), sort_keys=True) == json.dumps(without_timing(second), sort_keys=True)
    assert first["run"]["steps"][0]["minibatch"] != once(6)["run"]["steps"][0]["minibatch"]


@pytest.mark.parametrize("budget", [0, 1, 9, 23, 57, 101])
def test_budget_is_never_exceeded(budget):
    gold = make_gold(40)
    result, labels, proposals = run(Labeller(gold), varied_proposer("Maybe."), gold, budget=budget)
    assert len(labels) + len(proposals) <= budget
    assert result.calls == len(labels) + len(proposals)


def test_budget_holds_with_retries_and_counts_them():
    gold = make_gold(40)
    with FakeLLM(Labeller(gold)) as lab_server, FakeLLM(varied_proposer("Maybe.")) as prop_server:
        for _ in range(6):
            lab_server.faults.append(Reply(status=503))
        lab, prop = clients(lab_server, prop_server)
        result = optimize(INITIAL, SCHEMA, gold, lab, prop, budget_calls=30, seed=0, config=LLM_ONLY)
        sent = len(lab_server.requests) + len(prop_server.requests)
    assert sent <= 30 and result.calls == sent
    assert result.report["usage"]["labeller"]["retries"] >= 1


def test_cache_sends_each_policy_item_pair_once():
    gold = make_gold(40)
    result, labels, _ = run(Labeller(gold, markers={"TRY": 0.55}), varied_proposer("TRY"), gold, budget=300)
    keys = [json.dumps(body["messages"], sort_keys=True) for body in labels]
    assert len(keys) == len(set(keys)), "a (policy, item) pair was sent twice"
    steps = result.report["run"]["steps"]
    assert len(steps) >= 2  # parents were re-scored on minibatches, which would repeat pairs without the cache

    with FakeLLM(Labeller(gold)) as server:
        lab = LLMClient(LLMConfig(base_url=server.base_url, model="fake"))
        with Budget(100).attach(lab) as budget:
            evaluator = Evaluator(Predictor(lab), SCHEMA, budget)
            first = evaluator.evaluate(INITIAL, gold[:10])
            again = evaluator.evaluate(INITIAL, gold[:12])
        assert len(server.requests) == 12 and budget.spent == 12
        assert again.rewards | first.rewards == again.rewards


def test_invalid_proposals_are_dropped_and_counted():
    gold = make_gold(40)
    pasted = "Copy this: " + gold[3].input
    for text, reason in [
        ('Answer as JSON {"label": ...}', "output format"),
        (pasted, "pastes gold text"),
        ("x" * 5000, "too long"),
        ("   ", "empty"),
        (INITIAL.instruction, "unchanged"),
    ]:
        result, labels, _ = run(Labeller(gold), fixed_proposer(text), gold, budget=80)
        invalid = [c for c in candidates(result.report) if c["status"] == "invalid"]
        assert invalid and all(reason in c["reason"] for c in invalid), (text[:30], invalid[:1])
        assert result.report["run"]["invalid_proposals"] == len(invalid)
        if text.strip() and reason != "unchanged":
            assert not any(text.strip()[:40] in body["messages"][0]["content"] for body in labels)


def test_small_gold_uses_repeated_folds_and_says_so():
    gold = make_gold(15)
    labeller = Labeller(gold, base=0.4, markers={"CAREFUL": 1.0})
    result, labels, proposals = run(labeller, fixed_proposer("CAREFUL now."), gold, budget=200)
    report = result.report
    assert report["mode"] == "folds" and len(report["folds"]) == 3
    assert "small gold" in report["note"]
    assert report["test"]["initial"]["folds"] == 3
    assert report["test"]["best"]["reward"] > report["test"]["initial"]["reward"]
    assert result.accepted and "CAREFUL" in result.best.instruction
    assert len(labels) + len(proposals) <= 200
    for fold in report["folds"]:
        held_out = fold["sizes"]["test"]
        assert held_out in (5,) and fold["sizes"]["train"] + fold["sizes"]["val"] == 10


def test_wall_time_limit_stops_the_run():
    gold = make_gold(40)
    with FakeLLM(Labeller(gold), delay=0.05) as lab_server, FakeLLM(varied_proposer("Maybe.")) as prop_server:
        lab, prop = clients(lab_server, prop_server)
        started = time.monotonic()
        result = optimize(
            INITIAL, SCHEMA, gold, lab, prop, budget_calls=10_000, seed=0, max_seconds=0.6, config=LLM_ONLY
        )
        elapsed = time.monotonic() - started
    assert elapsed < 3.0
    assert result.calls < 200
    assert not result.accepted


def test_llm_failures_score_zero_and_are_not_resent():
    gold = make_gold(40)

    def broken(body):
        return Reply(status=400, error="bad request")

    result, labels, _ = run(broken, varied_proposer("Maybe."), gold, budget=60)
    assert not result.accepted
    assert result.report["run"]["initial_val"]["failed"] == result.report["run"]["initial_val"]["n"]
    # The client steps down its output form and logprobs on a 400 (provider negotiation); beyond that, a 400 is
    # not retried and a failed pair is never sent again.
    keys = Counter(json.dumps([b["messages"], b.get("response_format"), b.get("logprobs")]) for b in labels)
    assert max(keys.values()) == 1


def test_progress_events_report_calls_within_budget():
    gold = make_gold(40)
    events = []
    result, _, _ = run(Labeller(gold), varied_proposer("Maybe."), gold, budget=70, progress=events.append)
    assert events[0]["phase"] == "initial" and events[-1]["phase"] == "done"
    assert all(e["calls"] <= e["budget"] == 70 for e in events)
    assert events[-1]["calls"] == result.calls


def test_minibatch_ties_are_settled_on_fresh_items():
    """A rewrite that helps only on items outside the step's minibatch ties there, and wins on the second one."""
    gold = make_gold(60)
    answers = {item.input: item.answer["label"][0] for item in gold}
    helped: set[str] = set()

    def sticky(body):
        """Right on the same half of the items whatever the wording; "BETTER" also fixes the helped ones."""
        text = last_user(body)
        right = share("same", text) < 0.5 or ("BETTER" in instruction_of(body) and text in helped)
        label = answers[text] if right else next(x for x in LABELS if x != answers[text])
        return Reply(json.dumps({"label": label}))

    first, _, _ = run(sticky, varied_proposer("BETTER"), gold, budget=60, seed=4)
    minibatch = set(first.report["run"]["steps"][0]["minibatch"])  # chosen from the seed alone, not the answers
    helped.update(item.input for item in gold if item.id not in minibatch)
    result, labels, proposals = run(sticky, varied_proposer("BETTER"), gold, budget=250, seed=4)
    step = result.report["run"]["steps"][0]
    assert set(step["minibatch"]) == minibatch
    rewrite = next(c for c in step["candidates"] if c["kind"].startswith("rewrite"))
    assert rewrite["minibatch"] == step["parent_minibatch"]  # a tie on the first minibatch...
    assert rewrite["tie_minibatch"]["candidate"] > rewrite["tie_minibatch"]["parent"]  # ...won on the second
    assert rewrite["status"] in ("promoted", "not_promoted") and "val" in rewrite
    demo = next(c for c in step["candidates"] if c["kind"].startswith("demos"))
    assert demo["status"] == "gate_failed" and demo["tie_minibatch"]["candidate"] == demo["tie_minibatch"]["parent"]
    assert len(labels) + len(proposals) <= 250


def test_free_text_answers_are_verified_numerically():
    """A config with only a TextArea answer (the seed's math tutor): "x = 2" is right for gold "2"."""
    schema = parse_label_config('<View><Text name="q" value="$q"/><TextArea name="answer" toName="q"/></View>')
    gold = [GoldItem(f"q{i}", f"What is {i} + {i}?", {"answer": str(2 * i)}) for i in range(40)]
    solved = {item.input: item.answer["answer"] for item in gold}

    def tutor(body):
        text = last_user(body)
        if "SOLVE" in instruction_of(body) or share("tutor", text) < 0.3:
            return Reply(json.dumps({"answer": "x = " + solved[text] + ".0"}))
        return Reply(json.dumps({"answer": "I am not sure"}))

    with FakeLLM(tutor) as lab_server, FakeLLM(fixed_proposer("SOLVE it step by step.")) as prop_server:
        lab, prop = clients(lab_server, prop_server)
        result = optimize(INITIAL, schema, gold, lab, prop, budget_calls=150, seed=0, config=LLM_ONLY)
    assert result.accepted and "SOLVE" in result.best.instruction
    assert result.report["test"]["best"]["reward"] == 1.0
    assert result.report["test"]["initial"]["reward"] < 0.6


def test_several_controls_are_scored_and_explained_together():
    schema = parse_label_config(THREE_CONTROLS_CONFIG)
    topics, moods = ["billing", "shipping", "returns"], ["positive", "neutral", "negative"]
    gold = [
        GoldItem(
            f"t{i}",
            f"ticket {i} about {topics[i % 3]} feeling {moods[i % 2]}",
            {"topics": [topics[i % 3]], "sentiment": [moods[i % 2]], "urgency": ["low" if i % 4 else "high"]},
        )
        for i in range(36)
    ]
    with FakeLLM() as lab_server, FakeLLM(varied_proposer("Maybe.")) as prop_server:  # keyword answers
        lab, prop = clients(lab_server, prop_server)
        result = optimize(INITIAL, schema, gold, lab, prop, budget_calls=80, seed=0, config=LLM_ONLY)
        sent = len(lab_server.requests) + len(prop_server.requests)
    run_report = result.report["run"]
    assert sent == result.calls <= 80
    assert set(run_report["steps"][0]["feedback"]["controls"]) == {"topics", "sentiment", "urgency"}
    val = run_report["initial_val"]
    assert {"topics", "sentiment", "urgency"} <= set(val) and 0.0 < val["reward"] < 1.0
