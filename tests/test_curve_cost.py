"""The run page's numbers as pure functions: the reward curve read from a report, the cost of its tokens, the prices."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from optimizer.learning.cost import Price, estimate
from optimizer.learning.curve import reward_curve
from optimizer.settings import Settings
from web.dashboard.charts import reward_curve as draw_curve


def candidate(status: str, minibatch=None, val=None, reason="why") -> dict:
    entry = {"kind": "rewrite:fix", "version": f"pv-{status[:6]}", "status": status, "reason": reason}
    if minibatch is not None:
        entry["minibatch"] = minibatch
    if val is not None:
        entry["val"] = val
    return entry


REPORT = {
    "mode": "split",
    "run": {
        "initial_val": {"reward": 0.4, "n": 10},
        "steps": [
            {"step": 1, "parent": "pv-a", "parent_minibatch": 0.5, "champion": "pv-b",
             "candidates": [candidate("gate_failed", 0.25), candidate("promoted", 0.75, 0.7)]},
            {"step": 2, "parent": "pv-b", "parent_minibatch": 0.75, "champion": "pv-b",
             "candidates": [candidate("not_promoted", 1.0, 0.7), candidate("invalid")]},
            {"step": 3, "parent": "pv-b", "minibatch": [], "stop": "budget exhausted"},
        ],
        "stop": "budget exhausted",
        "champion_val": {"reward": 0.7, "n": 10},
    },
    "test": {"initial": {"reward": 0.35}, "best": {"reward": 0.65}},
}  # fmt: skip


def test_one_point_per_step_with_the_champion_carried_forward():
    curve = reward_curve(REPORT)
    assert [s.step for s in curve.steps] == [1, 2, 3]
    assert [s.champion_val for s in curve.steps] == [0.7, 0.7, 0.7]  # promoted at step 1, kept after
    assert curve.initial_val == 0.4 and curve.final_val == 0.7
    assert (curve.initial_test, curve.final_test) == (0.35, 0.65)
    assert curve.steps[2].parent_minibatch is None and curve.steps[2].stop == "budget exhausted"
    first = curve.steps[0].candidates
    assert [c.accepted for c in first] == [False, True] and first[0].val is None and first[1].val == 0.7
    as_dict = curve.to_dict()
    assert [c["accepted"] for c in as_dict["steps"][0]["candidates"]] == [False, True]


def test_a_report_without_a_run_is_an_empty_curve():
    curve = reward_curve({})
    assert curve.steps == () and curve.initial_val is None and curve.final_test is None


def test_the_chart_has_one_champion_point_per_step_and_escapes_reasons():
    report = {**REPORT, "run": {**REPORT["run"]}}
    report["run"]["steps"] = [dict(s) for s in REPORT["run"]["steps"]]
    report["run"]["steps"][1]["candidates"] = [candidate("not_promoted", 1.0, 0.7, reason="<script>x</script>")]
    svg = str(draw_curve(reward_curve(report).to_dict()))
    assert svg.count('class="pt champion"') == 3 and svg.count('class="pt initial"') == 1
    assert "<script>" not in svg and "&lt;script&gt;x&lt;/script&gt;" in svg
    assert svg.count("pt cand-val accepted") == 1 and svg.count("pt cand-val rejected") == 1


def test_cost_by_role_from_tokens_and_prices_per_million():
    usage = {
        "labeller": {"calls": 10, "prompt_tokens": 2_000_000, "completion_tokens": 100_000},
        "proposer": {"calls": 2, "prompt_tokens": 10_000, "completion_tokens": 5_000},
    }
    rows = estimate(usage, {"labeller": Price(0.15, 0.60), "proposer": Price(2.5, 10.0)})
    by_role = {r.role: r for r in rows}
    assert by_role["labeller"].cost == pytest.approx(0.3 + 0.06)
    assert by_role["proposer"].cost == pytest.approx(0.025 + 0.05)
    unpriced = estimate(usage, {})
    assert all(r.cost == 0 and not r.priced for r in unpriced) and unpriced[0].calls == 10
    assert [r.role for r in estimate({}, {})] == ["labeller", "proposer"]


def test_proposer_prices_default_to_the_labellers_and_must_not_be_negative():
    same = Settings(_env_file=None, llm_price_input_per_1m=0.5, llm_price_output_per_1m=1.5)
    assert same.prices()["proposer"] == Price(0.5, 1.5)
    apart = Settings(
        _env_file=None, llm_price_input_per_1m=0.5, optimizer_price_input_per_1m="3", optimizer_price_output_per_1m=""
    )
    assert apart.prices()["proposer"] == Price(3.0, 0.0) and apart.prices()["labeller"] == Price(0.5, 0.0)
    with pytest.raises(ValidationError, match="llm_price_output_per_1m"):
        Settings(_env_file=None, llm_price_output_per_1m=-1)
