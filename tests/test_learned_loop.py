"""The loop proposes learned answers (a ranker, cascades, τ and k) and judges them like any other candidate: through
the minibatch gate and validation, against scripted LLMs over real HTTP."""

from __future__ import annotations

import hashlib
import json
import random

import pytest

from optimizer.labelstudio.labelconfig import parse_label_config
from optimizer.labelstudio.render import render_input
from optimizer.learning import modes
from optimizer.learning.gold import GoldItem, synth_config
from optimizer.learning.procedure import LoopConfig, optimize
from optimizer.learning.rewards import scoring_for
from optimizer.serving.llm import LLMClient, LLMConfig
from optimizer.serving.modes import Mode, RankerKind
from optimizer.serving.policy import Demo, Policy
from optimizer.serving.ranking import cache
from testkit.constants import REWARD_CONFIG
from testkit.fakellm import FakeLLM, Reply
from testkit.scripted import LABELS, Labeller, make_gold, varied_proposer

SCHEMA = parse_label_config(synth_config(LABELS, multiple=False))
INITIAL = Policy("Label the request.")


@pytest.fixture(autouse=True)
def fresh_rankers():
    cache.clear()
    yield
    cache.clear()


def run(labeller, gold, budget=150, seed=0, schema=SCHEMA, initial=INITIAL, **kwargs):
    with FakeLLM(labeller) as lab_server, FakeLLM(varied_proposer("Try harder.")) as prop_server:
        lab = LLMClient(LLMConfig(base_url=lab_server.base_url, model="fake", max_retries=0, backoff=0.0))
        prop = LLMClient(LLMConfig(base_url=prop_server.base_url, model="fake", response_format="text",
                                   logprobs=False, backoff=0.0))  # fmt: skip
        result = optimize(initial, schema, gold, lab, prop, budget_calls=budget, seed=seed, **kwargs)
        return result, lab_server.requests + prop_server.requests


def candidates(report: dict) -> list[dict]:
    return [c for step in report["run"]["steps"] for c in step.get("candidates", [])]


def test_a_ranker_that_beats_a_weak_labeller_is_promoted_through_the_gate_at_no_llm_cost():
    gold = make_gold(80)  # the words give the labels away; the scripted labeller is right 30 % of the time
    result, requests = run(Labeller(gold, base=0.3), gold)
    assert result.accepted and result.best.mode in (Mode.RANKER, Mode.CASCADE)
    entries = candidates(result.report)
    ranker = next(c for c in entries if c["kind"].startswith("ranker:"))
    assert ranker["mode"] == "ranker" and ranker["llm_calls_per_100"] == 0
    assert "minibatch" in ranker and "val" in ranker and ranker["status"] == "promoted"
    # It made no LLM call, so it was judged on every training and validation item, with the cheaper bar.
    sizes = result.report["split"]
    assert ranker["widened"]["items"] == sizes["train"] + sizes["val"] and ranker["widened"]["alpha"] == 0.2
    assert ranker["widened"]["candidate"] > ranker["widened"]["champion"]
    assert ranker["val"] > result.report["run"]["initial_val"]["reward"] + 0.3
    assert result.report["test"]["best"]["reward"] > result.report["test"]["initial"]["reward"] + 0.3
    assert result.report["test"]["best"]["llm_calls_per_100"] < 100
    assert result.report["calls"] == len(requests)  # every request is counted; ranker answers send none
    assert result.report["run"]["rankers"]["best"] in ("linear", "neighbours")


def test_a_ranker_that_cannot_learn_is_refused_and_the_llm_kept():
    gold = [
        GoldItem(item.id, f"request {hashlib.sha256(item.id.encode()).hexdigest()[:8]}", item.answer)
        for item in make_gold(80)
    ]
    result, _ = run(Labeller(gold, base=0.9), gold, budget=120)
    assert result.best.mode is Mode.LLM
    learned = [c for c in candidates(result.report) if c["kind"].startswith(("ranker:", "cascade:"))]
    assert learned, "learned answers were proposed"
    assert all(c["status"] in ("gate_failed", "not_promoted") for c in learned if "minibatch" in c)
    # Judged on training items too, the ranker answers them out of fold: a model that had seen them would have
    # learned these unique texts by heart and scored near 1 on the training 60 % of the items.
    widened = [c["widened"] for c in learned if "widened" in c]
    sizes = result.report["split"]
    assert widened and all(w["items"] == sizes["train"] + sizes["val"] and w["candidate"] < 0.4 for w in widened)


def test_learned_candidates_are_off_with_learned_false_and_runs_are_deterministic():
    gold = make_gold(60)
    off, _ = run(Labeller(gold, base=0.3), gold, config=LoopConfig(learned=False))
    assert not any(c["kind"].startswith(("ranker:", "cascade:")) for c in candidates(off.report))
    assert "rankers" not in off.report["run"]
    first, _ = run(Labeller(gold, base=0.3), gold, seed=3)
    cache.clear()  # rebuilt from the same pool, the rankers answer the same
    second, _ = run(Labeller(gold, base=0.3), gold, seed=3)
    strip = lambda report: json.dumps({k: v for k, v in report.items() if k not in ("timing",)}, sort_keys=True)  # noqa: E731
    assert strip(first.report) == strip(second.report)


def test_the_champion_is_refitted_on_validation_items_and_test_never_enters_its_pool():
    gold = make_gold(80)
    result, _ = run(Labeller(gold, base=0.3), gold)
    refit = result.report["run"]["refit"]
    sizes = result.report["split"]
    assert refit["pool"] == sizes["train"] + sizes["val"] == len(result.best.demos)
    assert result.best.version == refit["to"] == result.report["best"]["version"]
    pool = {d.input for d in result.best.demos}
    assert sum(item.input not in pool for item in gold) == sizes["test"] > 0  # the internal test split stays out


def test_a_cascade_is_proposed_from_a_ranker_parent_with_fitted_tau_and_k():
    gold = make_gold(80)
    result, _ = run(Labeller(gold, base=0.3), gold, budget=200)
    taus = result.report["run"]["rankers"]["taus"]
    cascades = [c for c in candidates(result.report) if c["kind"].startswith("cascade:")]
    assert cascades and all(c["mode"] == "cascade" for c in cascades)
    assert {c["tau"] for c in cascades} <= set(taus)
    assert all(c["narrow_k"] == result.report["run"]["rankers"]["k"] for c in cascades if "narrow_k" in c)


def graded(n: int, seed: int) -> list[GoldItem]:
    """Graded (prompt, response) pairs: a response is good when it names the prompt's topic."""
    schema = parse_label_config(REWARD_CONFIG)
    rng = random.Random(seed)
    topics = [f"{a}{b}" for a in ("card", "loan", "fee", "pin", "atm") for b in ("ton", "mar", "vex", "lip")]
    out = []
    for i in range(n):
        topic, other = rng.sample(topics, 2)
        good = rng.random() < 0.7
        data = {"prompt": f"question about {topic}, please", "response": f"It is about {topic if good else other}."}
        out.append(GoldItem(f"r{seed}-{i}", render_input(schema, data), {"reward": ["1" if good else "0"]}))
    return out


def test_judge_optimisation_chooses_the_reward_model_over_an_llm_judge_that_says_good_to_everything():
    schema = parse_label_config(REWARD_CONFIG)
    gold = graded(120, 0)

    def always_good(body):
        return Reply(json.dumps({"reward": "1"}), logprob=-0.1)

    result, _ = run(always_good, gold, budget=150, schema=schema, initial=Policy("Grade the response."),
                    scoring=scoring_for(schema))  # fmt: skip
    assert result.accepted and result.best.mode in (Mode.RANKER, Mode.CASCADE)
    test = result.report["test"]
    # Balanced accuracy (the judge's score): the always-Good judge has 0.5.
    assert test["initial"]["controls"]["reward"]["balanced_accuracy"] == pytest.approx(0.5)
    assert test["best"]["controls"]["reward"]["balanced_accuracy"] > 0.75


def xor_pool(n: int) -> tuple:
    """A label that is the XOR of two words: no linear model over words separates it, the nearest items do."""
    rng = random.Random(5)
    out = []
    for i in range(n):
        a, b = rng.choice(("north", "south")), rng.choice(("red", "blue"))
        label = "alpha" if (a == "north") == (b == "red") else "bravo"
        out.append(Demo(f"{a} item{i} {b}", {"label": label}))  # never adjacent: no bigram names the pair
    return tuple(out)


def test_fit_prefers_the_linear_ranker_unless_the_neighbours_are_clearly_better():
    fitted = modes.fit(SCHEMA, tuple(Demo(i.input, i.answer) for i in make_gold(80)), max_k=8)
    assert fitted.best is RankerKind.LINEAR  # both are perfect here: the default stays
    xor = modes.fit(SCHEMA, xor_pool(120), max_k=8)
    assert xor.best is RankerKind.NEIGHBOURS
    assert xor.scores["neighbours"] > xor.scores["linear"] + 0.2


def test_the_tau_ladder_answers_three_quarters_half_and_a_quarter_of_the_training_items():
    pool = tuple(
        Demo(f"request {i}: {LABELS[i % 5]}word{i % 3} {LABELS[(i * 7) % 5]}word{i % 2}", {"label": [LABELS[i % 5]]})
        for i in range(150)
    )
    fitted = modes.fit(SCHEMA, pool, max_k=8)
    assert len(fitted.taus) == 3 and list(fitted.taus) == sorted(fitted.taus)
    ranker = cache.ranker_for(fitted.best, SCHEMA, SCHEMA.choices[0], pool)
    shares = [float((ranker.oof_confidence >= tau).mean()) for tau in fitted.taus]
    for share, target in zip(shares, modes.COVERAGES, strict=True):
        assert share == pytest.approx(target, abs=0.08)
    assert 2 <= fitted.k <= len(LABELS) // 2


class CandidateReader(Labeller):
    """``Labeller`` that also knows a narrowed input: the candidates note after the input is not part of its text."""

    def __call__(self, body: dict) -> Reply:
        messages = [dict(m) for m in body["messages"]]
        messages[-1]["content"] = messages[-1]["content"].split("\n\nCandidate labels for ")[0]
        return super().__call__({**body, "messages": messages})


def test_a_cascade_wins_when_the_ranker_is_sure_of_some_inputs_and_the_llm_better_on_the_rest():
    clear = make_gold(60)  # the words give these labels away: the ranker is right and sure
    opaque = [  # nothing in these texts says their label: the ranker guesses, unsure
        GoldItem(f"o{i}", f"request {hashlib.sha256(str(i).encode()).hexdigest()[:10]}", {"label": [LABELS[i % 5]]})
        for i in range(60)
    ]
    gold = [item for pair in zip(clear, opaque, strict=True) for item in pair]
    result, _ = run(CandidateReader(gold, base=0.6), gold, budget=250)
    assert result.accepted and result.best.mode is Mode.CASCADE
    test = result.report["test"]
    assert test["best"]["reward"] > test["initial"]["reward"] + 0.1
    assert 20 < test["best"]["llm_calls_per_100"] < 80  # the opaque half goes to the LLM, the clear half does not
    promoted = [c for c in candidates(result.report) if c["status"] == "promoted"]
    assert promoted[-1]["mode"] == "cascade" and promoted[-1]["val"] > result.report["run"]["initial_val"]["reward"]


def test_a_free_candidate_is_judged_on_the_training_items_the_champion_was_scored_on_when_the_rest_is_unaffordable():
    gold = make_gold(80)
    result, requests = run(Labeller(gold, base=0.3), gold, budget=70)  # val, a minibatch and the test reserve
    sizes = result.report["split"]
    ranker = next(c for c in candidates(result.report) if c["kind"].startswith("ranker:") and "widened" in c)
    assert sizes["val"] < ranker["widened"]["items"] < sizes["train"] + sizes["val"]
    assert result.report["calls"] == len(requests) <= 70  # widening spent nothing it could not afford


def test_a_ranker_is_judged_only_on_training_items_whose_label_its_pool_shows_elsewhere():
    gold = make_gold(40)
    # One more label, on one training item only: out of fold no model could answer it.
    schema = parse_label_config(synth_config([*LABELS, "rare"], multiple=False))
    lone = GoldItem("lone", "a request about something else entirely", {"label": ["rare"]})
    pool = tuple(Demo(item.input, item.answer) for item in [*gold, lone])
    policy = Policy("Label the request.", demos=pool, mode=Mode.RANKER, ranker=RankerKind.LINEAR)
    kept = modes.knowable(policy, schema, [*gold, lone])
    assert lone not in kept and len(kept) == len(gold)
    assert modes.knowable(Policy("Label the request."), schema, gold) == []  # no ranker, nothing to judge it on
