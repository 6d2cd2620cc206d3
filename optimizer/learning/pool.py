"""A small pool of validated policies to choose parents from, instead of always rewriting the last prompt.

Parent choice follows GEPA's per-item Pareto idea: a policy's weight is the number of validation items on which it
has the best reward among pool members (ties count for each), and a policy another member dominates (never worse on
any item, better on one) gets none. A policy that is best on some items so stays a possible parent even when its
mean is not the highest. The pool keeps the ``size`` best by mean reward; the
champion is never evicted.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from optimizer.learning.evaluation import Evaluation
from optimizer.serving.policy import Policy


@dataclass
class Member:
    policy: Policy
    val: Evaluation


def _dominates(a: dict[str, float], b: dict[str, float]) -> bool:
    return all(a.get(i, 0.0) >= r - 1e-9 for i, r in b.items()) and any(a.get(i, 0.0) > r + 1e-9 for i, r in b.items())


class Pool:
    def __init__(self, size: int = 4) -> None:
        self.size = max(1, size)
        self.members: list[Member] = []

    def add(self, policy: Policy, val: Evaluation, champion: str) -> None:
        if any(m.policy.version == policy.version for m in self.members):
            return
        self.members.append(Member(policy, val))
        ranked = sorted(self.members, key=lambda m: (m.policy.version != champion, -m.val.mean, m.policy.version))
        self.members = ranked[: self.size]

    def weights(self) -> list[int]:
        """Items on which each member is best; 0 for a member another one dominates (never worse, once better)."""
        best: dict[str, float] = {}
        for member in self.members:
            for item, reward in member.val.rewards.items():
                best[item] = max(best.get(item, 0.0), reward)
        out = []
        for m in self.members:
            dominated = any(o is not m and _dominates(o.val.rewards, m.val.rewards) for o in self.members)
            wins = sum(1 for item, reward in m.val.rewards.items() if reward >= best[item] - 1e-9 and reward > 0)
            out.append(0 if dominated else wins)
        return out

    def select(self, rng: random.Random) -> Member:
        weights = self.weights()
        if not any(weights):
            weights = [1] * len(self.members)
        return rng.choices(self.members, weights=weights, k=1)[0]
