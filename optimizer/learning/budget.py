"""A hard budget in LLM calls and wall time for one optimisation run, shared by the labeller and the proposer.

Two layers, so the budget holds even when the plan is wrong:
- **planning**: the loop asks :meth:`Budget.affords` before each batch and only sends what fits;
- **enforcement**: :meth:`Budget.attach` installs a listener on each client's usage counter that runs just before
  every HTTP request (retries and format probes included). Once the calls are spent or the deadline has passed it
  raises :class:`BudgetExhausted`, so the request is never sent. The predictor turns that into a failed
  prediction; the evaluator sees the refusal and discards the incomplete batch instead of scoring it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from optimizer.serving.llm import LLMClient
from optimizer.serving.llm_errors import LLMError


class BudgetExhausted(LLMError):
    """No call may be sent: the run's call budget or wall-time limit is used up. Never retried."""


class Budget:
    def __init__(
        self, calls: int, seconds: float | None = None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if calls < 0:
            raise ValueError("the call budget must be >= 0")
        self.calls = calls
        self.seconds = seconds
        self._clock = clock
        self.started = clock()
        self.deadline = None if seconds is None else self.started + seconds
        self.spent = 0
        self.refused = 0
        self.ceiling = calls
        self._lock = threading.Lock()
        self._attached: list[tuple[LLMClient, Callable]] = []

    @property
    def remaining(self) -> int:
        return max(0, min(self.calls, self.ceiling) - self.spent)

    def cap(self, calls: int | None) -> None:
        """Limit the calls from now on to ``calls`` more (None lifts the cap); used to share a budget across runs."""
        self.ceiling = self.calls if calls is None else min(self.calls, self.spent + max(0, calls))

    @property
    def expired(self) -> bool:
        return self.deadline is not None and self._clock() >= self.deadline

    def affords(self, calls: int) -> bool:
        return not self.expired and calls <= self.remaining

    def elapsed(self) -> float:
        return self._clock() - self.started

    def _charge(self, name: str, amount: int) -> None:
        if name != "calls":
            return
        with self._lock:
            if amount > self.remaining or self.expired:
                self.refused += 1
                raise BudgetExhausted("optimisation budget exhausted: call not sent")
            self.spent += amount

    def attach(self, *clients: LLMClient) -> Budget:
        """Charge every request of these clients (each distinct client once) to this budget."""
        for client in clients:
            if any(client is c for c, _ in self._attached):
                continue
            listener = self._charge
            client.usage.listeners.append(listener)
            self._attached.append((client, listener))
        return self

    def detach(self) -> None:
        for client, listener in self._attached:
            if listener in client.usage.listeners:
                client.usage.listeners.remove(listener)
        self._attached.clear()

    def __enter__(self) -> Budget:
        return self

    def __exit__(self, *exc) -> None:
        self.detach()
