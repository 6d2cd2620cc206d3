"""Reward-scoring projects: the config shape, the judge's default instruction, logprob scores, balanced rewards."""

from __future__ import annotations

import json
import math

import pytest

from _wsgi import create_app
from optimizer.labelstudio.judge import judge_shape
from optimizer.labelstudio.labelconfig import parse_label_config
from optimizer.learning.budget import Budget
from optimizer.learning.evaluation import Evaluator
from optimizer.learning.gold import GoldItem
from optimizer.learning.metrics import balanced_accuracy, cohen_kappa
from optimizer.learning.rewards import Reward, Scoring, balance_weights, soft_reward
from optimizer.learning.verifiers import Verdict
from optimizer.runtime.versions import policy_version
from optimizer.serving.llm import LLMClient
from optimizer.serving.policy import Policy
from optimizer.serving.predictor import Predictor
from testkit.constants import REWARD_CONFIG, SUPPORT_CONFIG, THREE_CONTROLS_CONFIG
from testkit.fakellm import Reply, last_user

GOOD_BAD = (
    '<View><Text name="question" value="$q"/><Text name="answer" value="$a"/>'
    '<Choices name="grade" toName="answer"><Choice value="Good"/><Choice value="Bad"/></Choices></View>'
)
YES_NO = GOOD_BAD.replace('"Good"', '"yes"').replace('"Bad"', '"no"')
FIVE_POINT = (
    '<View><Text name="p" value="$prompt"/><Text name="r" value="$response"/><Choices name="score" toName="r">'
    + "".join(f'<Choice value="{i}"/>' for i in range(1, 6))
    + "</Choices></View>"
)


def test_the_rlvr_config_is_a_judge_with_its_fields_and_grades():
    shape = judge_shape(parse_label_config(REWARD_CONFIG))
    assert shape is not None
    assert (shape.prompt.key, shape.response.key, shape.control.name) == ("prompt", "response", "reward")
    assert shape.grades == (("1", 1.0), ("0", 0.0)) and shape.best == "1" and shape.binary


@pytest.mark.parametrize("config, best", [(GOOD_BAD, "Good"), (FIVE_POINT, "5")])
def test_good_bad_and_numeric_scales_qualify(config, best):
    shape = judge_shape(parse_label_config(config))
    assert shape is not None and shape.best == best


@pytest.mark.parametrize("config", [YES_NO, THREE_CONTROLS_CONFIG, SUPPORT_CONFIG])
def test_other_configs_are_not_judges(config):
    assert judge_shape(parse_label_config(config)) is None


def judge_tasks(n: int) -> list[dict]:
    return [{"id": i, "data": {"prompt": f"What is {i}+{i}?", "response": f"It is {2 * i}."}} for i in range(n)]


def test_predict_on_a_reward_config_grades_with_the_judge_instruction_and_a_logprob_score(make_settings, fake_llm):
    fake_llm.responder = lambda body: Reply(json.dumps({"reward": "1"}), logprob=-0.2)
    app = create_app(make_settings())
    client = app.test_client()
    setup = client.post("/setup", json={"project": "41.1", "schema": REWARD_CONFIG}).get_json()
    answer = client.post(
        "/predict", json={"tasks": judge_tasks(3), "label_config": REWARD_CONFIG, "project": "41.1"}
    ).get_json()
    judge = app.extensions["services"].judge_policy
    assert setup["model_version"] == answer["results"][0]["model_version"]
    assert policy_version(setup["model_version"]) == judge.version
    system = fake_llm.requests[-1]["messages"][0]["content"]
    assert system.startswith(judge.instruction) and "strict grader" in system
    assert "[input]\nWhat is" in last_user(fake_llm.requests[-1])
    for result in answer["results"]:
        item = result["result"][0]
        assert item["value"] == {"choices": ["1"]} and item["from_name"] == "reward"
        # '"1"' is three tokens at -0.2 each in the scripted server: the label's probability, not a constant.
        assert 0 < result["score"] < 1 and result["score"] == pytest.approx(item["score"])


def test_a_classification_config_keeps_the_generic_default(make_settings, fake_llm):
    app = create_app(make_settings())
    body = {"tasks": [{"data": {"text": "billing"}}], "label_config": THREE_CONTROLS_CONFIG, "project": "42.1"}
    answer = app.test_client().post("/predict", json=body).get_json()
    assert policy_version(answer["model_version"]) == app.extensions["services"].default_policy.version


# --- balanced accuracy, kappa, soft rewards --------------------------------------------------------------------------

GOLD = ["1"] * 7 + ["0"] * 3


def test_an_always_good_judge_has_balanced_accuracy_one_half_and_kappa_zero():
    pairs = [("1", g) for g in GOLD]
    assert balanced_accuracy(pairs) == 0.5 and cohen_kappa(pairs) == 0.0
    perfect = [(g, g) for g in GOLD]
    assert balanced_accuracy(perfect) == 1.0 and cohen_kappa(perfect) == 1.0
    # One of three "Bad" found, no false alarms: recall 1 and 1/3.
    some = [("1", g) for g in GOLD[:9]] + [("0", "0")]
    assert balanced_accuracy(some) == pytest.approx((1 + 1 / 3) / 2)
    assert 0 < cohen_kappa(some) < 1


def test_balance_weights_make_the_mean_reward_balanced_accuracy():
    answers = [{"reward": [g]} for g in GOLD]
    weights = balance_weights(answers, "reward")
    assert sum(weights) == pytest.approx(len(GOLD))
    hits = [1.0 if g == "1" else 0.0 for g in GOLD]  # always "Good"
    assert sum(h * w for h, w in zip(hits, weights, strict=True)) / len(GOLD) == pytest.approx(0.5)


def test_soft_reward_is_the_probability_of_the_gold_grade():
    schema = parse_label_config(REWARD_CONFIG)
    right, wrong = {"reward": Verdict(1.0)}, {"reward": Verdict(0.0)}
    assert soft_reward(schema, right, {"reward": ["1"]}, {"reward": 0.8}) == pytest.approx(0.8)
    assert soft_reward(schema, wrong, {"reward": ["1"]}, {"reward": 0.8}) == pytest.approx(0.2)
    assert soft_reward(schema, wrong, {}, {}) == 0.0


def test_evaluator_with_balanced_soft_scoring_reports_both_rewards(make_settings, fake_llm):
    schema = parse_label_config(REWARD_CONFIG)
    items = [GoldItem(f"i{k}", f"[input]\nq{k}\n\n[output]\nr{k}", {"reward": [g]}) for k, g in enumerate(GOLD)]
    fake_llm.responder = lambda body: Reply(json.dumps({"reward": "1"}), logprob=-0.1)
    llm = LLMClient(make_settings().labeller_config())
    policy = Policy("Grade it.")
    hard = Evaluator(Predictor(llm), schema, Budget(100), scoring=Scoring(balance="reward")).evaluate(policy, items)
    soft = Evaluator(Predictor(llm), schema, Budget(100), scoring=Scoring(Reward.SOFT, "reward")).evaluate(
        policy, items
    )
    assert hard.mean == pytest.approx(0.5) and hard.metrics(schema)["controls"]["reward"]["kappa"] == 0.0
    assert soft.hard_mean == pytest.approx(0.5)
    p = math.exp(-0.3)  # '"1"' is three scripted tokens at -0.1
    assert soft.mean == pytest.approx((p + (1 - p)) / 2, abs=1e-4)
    assert soft.metrics(schema)["hard_reward"] == pytest.approx(0.5)


# --- training a judge in-process: real Redis, the real loop, the scripted judge and a scripted Label Studio ---------


N_ROWS = 40


def test_training_a_judge_uses_balanced_accuracy_and_reports_kappa(make_settings):
    from optimizer.jobs.training import train_project
    from optimizer.runtime.services import Services
    from testkit.fakellm import FakeLLM
    from testkit.fakels import FakeLabelStudio
    from testkit.judging import ScriptedJudge, graded_rows

    rows = graded_rows()[:N_ROWS]
    tasks = [
        {
            "id": i + 1,
            "data": {"prompt": r["prompt"], "response": r["response"]},
            "annotations": [{"id": 100 + i, "result": grade_result(r["reward"]), "was_cancelled": False}],
        }
        for i, r in enumerate(rows)
    ]
    with FakeLLM(ScriptedJudge(rows)) as llm, FakeLabelStudio(REWARD_CONFIG, tasks) as ls:
        settings = make_settings(
            llm_base_url=llm.base_url, label_studio_url=ls.url, label_studio_api_key=ls.token, optimize_budget=200
        )
        services = Services(settings)
        summary = train_project(services, "1.1", "job-judge", lambda **_: None).to_dict()
    assert summary["verifier"] == "balanced_accuracy" and summary["seeded_from"] == "judge default"
    before, after = summary["judge"]["initial"], summary["judge"]["best"]
    assert before["test"]["balanced_accuracy"] == 0.5 and before["test"]["kappa"] == 0.0
    assert summary["promoted"] is True, summary.get("reason", summary)
    assert after["test"]["balanced_accuracy"] == 1.0 and after["test"]["kappa"] == 1.0


def grade_result(value: str) -> list[dict]:
    return [{"from_name": "reward", "to_name": "output", "type": "choices", "value": {"choices": [value]}}]


def test_the_judge_default_is_recorded_live_and_can_be_overridden_like_any_policy(make_settings, fake_llm):
    fake_llm.responder = lambda body: Reply(json.dumps({"reward": "0"}))
    app = create_app(make_settings(allow_anonymous_writes=True))
    client, services = app.test_client(), app.extensions["services"]
    setup = client.post("/setup", json={"project": "43.1", "schema": REWARD_CONFIG}).get_json()
    judge, default = services.judge_policy, services.default_policy
    assert policy_version(setup["model_version"]) == judge.version
    listing = client.get("/projects/43.1/policies").get_json()
    assert listing["live"] == judge.version
    assert {p["version"] for p in listing["policies"]} >= {judge.version, default.version}
    # A user rolls back to the generic default: that is what the project is served from then on.
    assert client.post("/projects/43.1/rollback", json={"version": default.version}).status_code == 200
    body = {"tasks": judge_tasks(1), "label_config": REWARD_CONFIG, "project": "43.1"}
    assert (
        policy_version(client.post("/predict", json=body).get_json()["results"][0]["model_version"]) == default.version
    )
