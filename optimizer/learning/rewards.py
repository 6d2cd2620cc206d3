"""How a verifier's per-item verdicts become the reward the loop optimises: hard or soft, plain or class-balanced.

Hard reward (the default) is the verifier's own 0..1 verdict, combined over controls.

Soft reward (``Reward.SOFT``) replaces a single-choice control's 0/1 by the probability the labeller gave the gold
answer: the chosen label's probability (the predictor's logprob score) when it is right; when it is wrong, the rest
of the mass spread evenly over the other labels, ``(1 - p) / (K - 1)``, which for a binary grade is exactly
``1 - p``. A confident right answer now outscores a lucky one, which is a denser signal on small minibatches. Other
controls (multiple choice, free text) keep their hard verdicts.

Class balance (``balance=<control>``) weights each item by ``N / (K · n_c)``, where ``n_c`` counts the items in the
scored set whose gold label is ``c`` and ``K`` the distinct gold labels among them. The mean reward over the set is
then exactly balanced accuracy (the mean of per-class recalls) for a hard reward, and its soft analogue otherwise.
Weights come from the set being scored, so the identity holds for a minibatch, validation and test alike, and the
paired differences the gate uses compare like with like. With most responses graded "Good", a judge that always
says "Good" gets 0.5, not 0.7.

A single item's weighted reward can exceed 1 (a right answer on the rare class); only the set's mean is a score.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from optimizer.labelstudio.judge import judge_shape
from optimizer.labelstudio.labelconfig import Schema
from optimizer.learning.verifiers import Verdict, label_set


class Reward(StrEnum):
    HARD = "hard"
    SOFT = "soft"


@dataclass(frozen=True)
class Scoring:
    reward: Reward = Reward.HARD
    balance: str | None = None

    @property
    def verifier(self) -> str:
        """The name reports show for this scoring."""
        base = "balanced_accuracy" if self.balance else "verifier"
        return f"{base}+soft" if self.reward is Reward.SOFT else base


HARD = Scoring()


def soft_reward(
    schema: Schema,
    verdicts: Mapping[str, Verdict],
    choices: Mapping[str, list[str]],
    probabilities: Mapping[str, float],
    weights: Mapping[str, float] | None = None,
) -> float:
    """The item's reward with each single-choice control's verdict replaced by the probability of the gold label."""
    total = weight_sum = 0.0
    for name, verdict in verdicts.items():
        control = schema.choice(name)
        value = verdict.reward
        if control is not None and not control.multiple:
            p = min(1.0, max(0.0, float(probabilities.get(name, 0.0))))
            if not choices.get(name):
                value = 0.0
            elif verdict.reward >= 1.0:
                value = p
            else:
                value = (1.0 - p) / max(1, len(control.labels) - 1)
        weight = float((weights or {}).get(name, 1.0))
        total += weight * value
        weight_sum += weight
    return total / weight_sum if weight_sum else 0.0


def gold_class(answer: Mapping, control: str) -> str:
    labels = label_set(answer.get(control))
    return labels[0].casefold() if labels else ""


def balance_weights(answers: Sequence[Mapping], control: str) -> list[float]:
    """``N / (K · n_c)`` per item (see the module docstring); 1.0 for every item when nothing is to balance."""
    classes = [gold_class(a, control) for a in answers]
    counts = Counter(classes)
    if len(counts) < 2:
        return [1.0] * len(classes)
    n, k = len(classes), len(counts)
    return [n / (k * counts[c]) for c in classes]


def scoring_for(schema: Schema, reward: str | Reward = Reward.HARD) -> Scoring:
    """Reward-scoring (judge) configs are scored by balanced accuracy: most graded responses are "Good", and a
    judge that always says so must not win. Everything else keeps its verifier's plain mean."""
    shape = judge_shape(schema)
    return Scoring(Reward(reward), balance=shape.control.name if shape else None)
