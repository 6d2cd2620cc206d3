"""Verifiers and dataset metrics: the seed's set semantics and the edge cases that break naive scorers."""

from __future__ import annotations

import re
import time

import pytest

from optimizer.labelstudio.labelconfig import ChoiceControl, ObjectTag, Schema, TextControl
from optimizer.learning import metrics
from optimizer.learning.verifiers import (
    PatternRefused,
    auto_text,
    combine,
    exact_match,
    first_label_match,
    named,
    normalised_match,
    numeric_match,
    parse_number,
    regex_match,
    set_f1,
    set_scores,
)

SCHEMA = Schema(
    objects=(ObjectTag("text", "Text", "text"),),
    choices=(
        ChoiceControl("topics", "text", ("billing", "shipping", "returns"), True),
        ChoiceControl("sentiment", "text", ("positive", "negative"), False),
    ),
    answers=(TextControl("answer", "text"),),
    prompt_area=None,
    digest="t",
)


def test_set_scores_follow_the_seed_semantics():
    s = set_scores(["a", "b", "c"], ["a", "d"])
    assert s["precision"] == pytest.approx(1 / 3)
    assert s["coverage"] == pytest.approx(1 / 2)
    assert s["f1"] == pytest.approx(2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2))
    assert s["missing"] == ["d"] and s["spurious"] == ["b", "c"]


def test_both_empty_is_perfect_and_one_side_empty_is_zero():
    assert set_f1([], []).reward == 1.0
    assert set_scores([], [])["precision"] == 1.0
    none = set_scores([], ["a"])
    assert (none["precision"], none["coverage"], none["f1"]) == (0.0, 0.0, 0.0)
    extra = set_scores(["a"], [])
    assert (extra["precision"], extra["coverage"], extra["f1"]) == (0.0, 1.0, 0.0)
    assert set_f1(None, ["a"]).feedback["missing"] == ["a"]


def test_duplicates_count_once_and_case_is_ignored():
    assert set_f1(["Billing", "billing", "billing"], ["billing"]).reward == 1.0
    assert set_f1(["BILLING"], ["billing", "Billing"]).reward == 1.0
    verdict = set_f1(["billing", "Returns"], ["returns", "shipping"])
    assert verdict.reward == pytest.approx(0.5)
    assert verdict.feedback["missing"] == ["shipping"] and verdict.feedback["spurious"] == ["billing"]


def test_accuracy_for_single_choice():
    assert first_label_match(["positive"], ["Positive"]).reward == 1.0
    assert first_label_match("positive", ["negative"]).reward == 0.0
    assert first_label_match([], ["negative"]).feedback == {"expected": ["negative"], "got": None}


@pytest.mark.parametrize(
    ("got", "want", "ok"),
    [
        ("2.0", "2", True),
        ("x = 2", "2", True),
        ("The answer is -3.50.", "-3.5", True),
        ("1,000", "1000", True),
        ("2.", "2", True),
        ("1,5", "5", True),
        ("2.001", "2", False),
        ("no number", "2", False),
        ("", "0", False),
    ],
)
def test_numeric_match(got, want, ok):
    assert numeric_match()(got, want).reward == (1.0 if ok else 0.0)


def test_numeric_tolerance_is_relative_for_large_values():
    assert numeric_match(0.01)("1005", "1000").reward == 1.0
    assert numeric_match(0.01)("1011", "1000").reward == 0.0
    assert parse_number("nan") is None


def test_text_matches():
    assert exact_match(" x = 2 ", "x = 2").reward == 1.0
    assert exact_match("X = 2", "x = 2").reward == 0.0
    assert normalised_match("  X   =  2. ", "x = 2").reward == 1.0
    assert auto_text("x = 2", "2").reward == 1.0  # gold is a number: numeric
    assert auto_text("Paris.", "paris").reward == 1.0  # otherwise normalised
    assert auto_text("Lyon", "paris").feedback == {"expected": "paris", "got": "Lyon"}


def test_regex_match_with_and_without_group():
    assert regex_match(r"x\s*=\s*\d+")("so x = 2", "").reward == 1.0
    assert regex_match(r"x\s*=\s*\d+")("two", "").reward == 0.0
    grouped = regex_match(r"x\s*=\s*(\S+)")
    assert grouped("x = 2", "2").reward == 1.0
    assert grouped("x = 3", "2").feedback == {"expected": "2", "got": "3"}


def test_a_catastrophic_pattern_runs_in_linear_time():
    """``(a+)+$`` on 9,999 a's and a final "!" backtracks 2^9999 ways in Python's ``re``; RE2 answers at once."""
    answer = "a" * 9_999 + "!"
    verify = named("regex:(a+)+$")
    started = time.perf_counter()
    verdict = verify(answer, "")
    elapsed = time.perf_counter() - started
    assert verdict.reward == 0.0 and elapsed < 1.0, elapsed  # generous: linear is microseconds, exponential never ends
    assert verify("a" * 10_000, "a" * 10_000).reward == 1.0  # and it still matches (and captures) when it should
    assert named(r"regex:^(\w+)")("ok\ud800", "ok").reward == 1.0  # a lone surrogate in an answer is no error


@pytest.mark.parametrize(
    ("pattern", "words"),
    [
        (r"(\w)\1", "backreferences"),
        ("(?<=x)y", "RE2 can run"),
        ("(unclosed", "missing )"),
        ("a" * 501, "at most"),
        ("\ud800", "not valid UTF-8"),
    ],
)
def test_patterns_re2_cannot_run_are_refused(pattern, words):
    with pytest.raises(PatternRefused, match=re.escape(words)):
        named("regex:" + pattern)
    assert issubclass(PatternRefused, ValueError)  # what /setup turns into a 400


def test_named_specs():
    assert named("numeric:0.5")("2.4", "2").reward == 1.0
    assert named("regex:^yes")("yes sir", "").reward == 1.0
    assert named("set_f1") is set_f1
    with pytest.raises(ValueError, match="unknown verifier"):
        named("fuzzy")


def test_combine_selects_per_control_and_weights():
    gold = {"topics": ["billing", "returns"], "sentiment": ["negative"], "answer": "2"}
    predicted = {"topics": ["billing"], "sentiment": ["negative"], "answer": "x = 2"}
    score = combine(SCHEMA, predicted, gold)
    # topics: set F1 (P=1, C=0.5 → 2/3); sentiment: accuracy 1; answer: numeric 1.
    assert score.reward == pytest.approx((2 / 3 + 1 + 1) / 3)
    weighted = combine(SCHEMA, predicted, gold, weights={"topics": 2.0, "sentiment": 1.0, "answer": 1.0})
    assert weighted.reward == pytest.approx((2 * 2 / 3 + 1 + 1) / 4)
    custom = combine(SCHEMA, predicted, gold, verifiers={"answer": exact_match})
    assert custom.verdicts["answer"].reward == 0.0


def test_combine_judges_only_controls_the_gold_answers():
    score = combine(SCHEMA, {"topics": ["billing"], "sentiment": ["positive"]}, {"topics": ["billing"]})
    assert score.reward == 1.0 and set(score.verdicts) == {"topics"}
    assert combine(SCHEMA, {"topics": ["billing"]}, {}).reward == 0.0


def test_dataset_metrics():
    pairs = [(["a"], ["a"]), (["b"], ["a"]), (["a", "c"], ["a", "c"]), ([], ["c"])]
    assert metrics.subset_accuracy(pairs) == pytest.approx(0.5)
    table = metrics.per_label(pairs, ["a", "b", "c"])
    assert table["a"] == {"precision": 1.0, "recall": 2 / 3, "f1": pytest.approx(0.8), "support": 3}
    assert table["b"]["f1"] == 0.0 and table["b"]["support"] == 0
    tp, fp, fn = 3, 1, 2  # tp: a, a, c; fp: b; fn: a, c
    assert metrics.micro_f1(pairs) == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert metrics.macro_f1(pairs, ["a", "b", "c", "never"]) == pytest.approx((0.8 + 0.0 + 2 / 3) / 3)
    assert metrics.confusions(pairs) == [("a", "b", 1)]
