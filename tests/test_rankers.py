"""The learned rankers (optimizer/serving/ranking): what they learn, how honest their probabilities are, and how
they are built, cached and rebuilt."""

from __future__ import annotations

import random
import threading

import numpy as np
import pytest
from scipy import sparse
from sklearn.metrics import roc_auc_score

from optimizer.labelstudio.judge import judge_shape, pair_parts
from optimizer.labelstudio.labelconfig import parse_label_config
from optimizer.labelstudio.render import render_input
from optimizer.learning.gold import synth_config
from optimizer.serving.modes import RankerKind
from optimizer.serving.policy import Demo
from optimizer.serving.ranking import cache, ranker
from optimizer.serving.ranking.calibration import Platt, fit_thresholds, fold_ids
from optimizer.serving.ranking.features import Features, vectorizers
from testkit.constants import REWARD_CONFIG

LABELS = ("alpha", "bravo", "charlie", "delta", "echo")
WORDS = {label: [f"{label}{w}" for w in ("ton", "mar", "vex", "lip", "dor", "sun")] for label in LABELS}
SINGLE = parse_label_config(synth_config(LABELS, multiple=False))
MULTI = parse_label_config(synth_config(LABELS, multiple=True))


def noisy(n: int, seed: int, multiple: bool = False, signals=(0, 1, 2, 3), noise: int = 3) -> list[Demo]:
    """Items whose label words are mixed with other labels' words: some easy (three signal words), some hopeless
    (none), so a ranker's right and wrong answers differ in how sure it should be."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        labels = rng.sample(LABELS, rng.choice((1, 2)) if multiple else 1)
        signal = rng.choice(signals)
        words = [rng.choice(WORDS[label]) for label in labels for _ in range(signal)]
        words += [rng.choice(WORDS[rng.choice(LABELS)]) for _ in range(noise)]
        rng.shuffle(words)
        out.append(Demo(f"item {seed}-{i}: " + " ".join(words), {"label": labels if multiple else labels[0]}))
    return out


@pytest.fixture(autouse=True)
def fresh_cache():
    cache.clear()
    yield
    cache.clear()


def built(kind, schema, pool):
    return cache.ranker_for(kind, schema, schema.choices[0], tuple(pool))


def test_features_of_one_text_equal_scikit_learns_transform():
    texts = [d.input for d in noisy(30, 0)] + ["Ünïcode, punctuation!  and   spaces"]
    features = Features(texts)
    word, char = vectorizers()
    reference = sparse.hstack([word.fit(texts).transform(texts), char.fit(texts).transform(texts)]).toarray()
    one_by_one = np.vstack([features.transform([t]).toarray() for t in texts])
    assert reference.shape == one_by_one.shape
    assert np.abs(reference - one_by_one).max() < 1e-12
    assert np.abs(features.transform(texts).toarray() - one_by_one).max() < 1e-12  # the batch path agrees too


@pytest.mark.parametrize("kind", list(RankerKind))
def test_a_ranker_learns_its_pool_and_ranks_every_label(kind):
    rank = built(kind, SINGLE, noisy(120, 1))
    held = noisy(150, 2)
    rankings = rank.rank_many([d.input for d in held])
    accuracy = np.mean([r.answer[0] == d.output["label"] for r, d in zip(rankings, held, strict=True)])
    assert accuracy > 0.45  # chance is 0.2; a quarter of the items carry no signal at all
    for r in rankings:
        assert sorted(r.labels) == sorted(LABELS) and r.answer == r.labels[:1]
        assert list(r.probabilities) == sorted(r.probabilities, reverse=True)
        assert sum(r.probabilities) == pytest.approx(1.0, abs=1e-4)
        assert r.confidence == pytest.approx(r.probabilities[0], abs=1e-6)


def test_confidence_is_calibrated_and_ranks_right_answers_first():
    # Half the items easy (three signal words, one distractor), half hopeless (a distractor alone).
    rank = built(RankerKind.LINEAR, SINGLE, noisy(150, 3, signals=(0, 3), noise=1))
    held = noisy(300, 4, signals=(0, 3), noise=1)
    rankings = rank.rank_many([d.input for d in held])
    right = np.array([r.answer[0] == d.output["label"] for r, d in zip(rankings, held, strict=True)])
    confidence = np.array([r.confidence for r in rankings])
    assert roc_auc_score(right, confidence) > 0.7
    # Calibrated out of fold: the mean confidence is near the accuracy it predicts (not the ~1.0 an in-sample fit
    # would claim).
    assert abs(confidence.mean() - right.mean()) < 0.12
    assert confidence[right].mean() > confidence[~right].mean() + 0.1


def test_a_pool_item_is_answered_out_of_fold_never_from_its_own_annotation():
    pool, held = noisy(120, 10), noisy(200, 11)
    rank = built(RankerKind.LINEAR, SINGLE, pool)

    def accuracy(items, suffix=""):
        return np.mean([rank.rank(d.input + suffix).answer[0] == d.output["label"] for d in items])

    # A trailing space changes no feature but is another text: the refitted model's own, in-sample answer.
    in_sample, pool_items, new_items = accuracy(pool, " "), accuracy(pool), accuracy(held)
    assert in_sample > pool_items + 0.15  # the refitted model has seen (and fits) its pool
    assert abs(pool_items - new_items) < 0.1  # pool items are scored as honestly as new ones


def test_rebuilt_rankers_are_identical():
    pool = noisy(80, 5)
    texts = [d.input for d in noisy(40, 6)]
    first = [r.probabilities for r in built(RankerKind.LINEAR, SINGLE, pool).rank_many(texts)]
    cache.clear()
    second = built(RankerKind.LINEAR, SINGLE, pool)
    assert [r.probabilities for r in second.rank_many(texts)] == first
    assert [second.rank(t).probabilities for t in texts] == first  # one at a time: the same numbers


def test_multiple_choice_has_per_label_thresholds_and_never_answers_nothing():
    pool, held = noisy(150, 7, multiple=True), noisy(200, 8, multiple=True)
    rank = built(RankerKind.LINEAR, MULTI, pool)
    assert rank.thresholds.shape == (len(LABELS),)
    rankings = rank.rank_many([d.input for d in held])
    assert all(r.answer for r in rankings)

    def f1(a, b):
        return 2 * len(set(a) & set(b)) / (len(a) + len(b))

    learned = np.mean([f1(r.answer, d.output["label"]) for r, d in zip(rankings, held, strict=True)])
    frequent = max(LABELS, key=lambda label: sum(label in d.output["label"] for d in pool))
    prior = np.mean([f1([frequent], d.output["label"]) for d in held])
    assert learned > prior + 0.15
    for r in rankings:  # each chosen label's probability clears its own threshold, or it is the top one
        for label in r.answer[1:]:
            j = LABELS.index(label)
            assert r.probabilities[r.labels.index(label)] >= rank.thresholds[j] - 1e-6


def test_platt_is_increasing_and_falls_back_to_the_mean_when_nothing_varies():
    rng = np.random.default_rng(0)
    scores = rng.uniform(0.05, 0.95, 400)
    rewards = (rng.uniform(size=400) < scores).astype(float)
    platt = Platt(scores, rewards)
    mapped = platt(np.linspace(0.05, 0.95, 20))
    assert np.all(np.diff(mapped) > 0)
    assert abs(platt(scores).mean() - rewards.mean()) < 0.03
    # Every answer right: no slope to fit, so the level moves to the smoothed mean and the order stays.
    level = Platt(scores, np.ones(400))
    assert level(scores).mean() == pytest.approx(401 / 402, abs=1e-6)
    assert level(np.array([0.1])) < level(np.array([0.9]))
    flat = Platt(np.full(10, 0.3), np.r_[np.ones(5), np.zeros(5)])
    assert np.allclose(flat(np.array([0.1, 0.9])), 6 / 12)


def test_folds_are_deterministic_and_spread_every_label():
    pool = noisy(100, 9)
    texts = [d.input for d in pool]
    y = np.array([[d.output["label"] == label for label in LABELS] for d in pool], dtype=float)
    first = fold_ids(texts, y, 5)
    assert np.array_equal(first, fold_ids(texts, y, 5))
    order = np.random.default_rng(1).permutation(len(texts))
    assert np.array_equal(fold_ids([texts[i] for i in order], y[order], 5), first[order])  # order does not matter
    for j in range(len(LABELS)):
        per_fold = np.bincount(first[y[:, j] > 0], minlength=5)
        assert per_fold.max() - per_fold.min() <= 1


def test_thresholds_are_fitted_per_label():
    # Label 0 is present when its score is above 0.7, label 1 when above 0.2: one shared threshold fits neither.
    rng = np.random.default_rng(2)
    p = rng.uniform(size=(400, 2))
    gold = np.stack([p[:, 0] > 0.7, p[:, 1] > 0.2], axis=1).astype(float)
    thresholds = fit_thresholds(p, gold)
    assert thresholds[0] == pytest.approx(0.7, abs=0.051) and thresholds[1] == pytest.approx(0.2, abs=0.051)


def test_the_cache_is_bounded_and_builds_a_missing_ranker_once(monkeypatch):
    pools = [tuple(noisy(12, 100 + i)) for i in range(cache.RANKERS_PER_PROCESS + 3)]
    kept = [built(RankerKind.NEIGHBOURS, SINGLE, pool) for pool in pools]
    assert cache.size() == cache.RANKERS_PER_PROCESS
    assert built(RankerKind.NEIGHBOURS, SINGLE, pools[-1]) is kept[-1]  # the newest is still there
    assert built(RankerKind.NEIGHBOURS, SINGLE, pools[0]) is not kept[0]  # the oldest was evicted and rebuilt

    calls = []
    real = ranker.build

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(ranker, "build", counted)
    pool = tuple(noisy(60, 200))
    threads = [threading.Thread(target=built, args=(RankerKind.LINEAR, SINGLE, pool)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1


def test_a_judge_input_splits_into_prompt_and_response_and_trains_a_reward_model():
    schema = parse_label_config(REWARD_CONFIG)
    shape = judge_shape(schema)
    text = render_input(schema, {"prompt": "What is 2+2?", "response": "Four."})
    assert pair_parts(schema, shape, text) == ("What is 2+2?", "Four.")
    assert pair_parts(schema, shape, "no headers at all") is None
    rng = random.Random(3)
    topics = [w for words in WORDS.values() for w in words]

    def graded(n):
        out = []
        for _ in range(n):
            topic, other = rng.sample(topics, 2)
            good = rng.random() < 0.7
            data = {"prompt": f"tell me about {topic} today", "response": f"Here is {topic if good else other}."}
            out.append(Demo(render_input(schema, data), {"reward": "1" if good else "0"}))
        return out

    model = cache.ranker_for(RankerKind.LINEAR, schema, schema.choices[0], tuple(graded(80)))
    held = graded(200)
    said = [model.rank(d.input).answer[0] for d in held]
    truth = [d.output["reward"] for d in held]
    recalls = [np.mean([s == g for s, g in zip(said, truth, strict=True) if g == grade]) for grade in ("1", "0")]
    assert np.mean(recalls) > 0.8  # balanced accuracy: the always-"Good" judge gets 0.5
