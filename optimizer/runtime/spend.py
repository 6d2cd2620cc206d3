"""What each project spends on LLM calls, and the daily limit that stops serving it.

:func:`meter` hooks one LLM client: every answered call is priced (its profile's price, else the price table's for
the model, see ``Settings.price_quote``) and added to the spend ledger under the project the work was for
(``optimizer.serving.payer``). Calls made for no project (a CLI run on a gold file) are not attributed. A Redis
fault never fails a call: the call is logged as uncounted instead.

:func:`over_limit` is the budget guard ``/predict`` and bulk chunks ask before calling the LLM: a project's Extra
params may set ``daily_spend_limit``; once today's spend (UTC) reaches it, the project's tasks get no prediction with
the reason ``budget`` until the day turns. With Redis unreachable the spend is unknown and serving goes on.
"""

from __future__ import annotations

import logging
import threading
import time

import redis

from optimizer.learning.cost import Quote
from optimizer.learning.prices import quote
from optimizer.learning.prices import source as prices_source
from optimizer.project_settings import ProjectConfig
from optimizer.serving import payer
from optimizer.serving.llm import LLMClient
from optimizer.settings import Settings
from optimizer.state.spend import SpendLedger

log = logging.getLogger("optimizer.runtime.spend")

LABELLER, PROPOSER = "labeller", "proposer"
# What the prompt proposer's spend is recorded under (role "proposer"): the OPTIMIZER_* settings act as its profile.
OPTIMIZER_PROFILE = "optimizer"


def _quote(settings: Settings, role: str, profile: str, model: str) -> Quote:
    if role == PROPOSER:
        return settings.proposer_quote()
    try:
        return settings.price_quote(profile, model)
    except KeyError:  # a profile removed from LLM_PROFILES: the table's price for the model
        return quote(model)


def meter(client: LLMClient, role: str, settings: Settings, ledger: SpendLedger) -> None:
    """Charge every answered call of ``client`` to the project it was made for."""
    quotes: dict[str, Quote] = {}
    outage = _Outage()

    def on_answer(prompt_tokens: int, completion_tokens: int) -> None:
        who = payer.current()
        if who is None or outage.skipping():
            return
        profile = who.profile if role == LABELLER else OPTIMIZER_PROFILE
        price = quotes.get(profile)
        if price is None:
            price = quotes[profile] = _quote(settings, role, profile, client.config.model)
        cost = price.price.cost(prompt_tokens, completion_tokens)
        try:
            ledger.record(who.project, role, profile, prompt_tokens, completion_tokens, cost, priced=price.priced)
        except redis.RedisError as exc:  # spend must never fail the call it counts
            outage.failed(exc, role)

    client.usage.answer_listeners.append(on_answer)


class _Outage:
    """With Redis down, spend goes uncounted: try again after a pause, and say so once a minute, not per call."""

    PAUSE, REPORT = 1.0, 60.0

    def __init__(self) -> None:
        self.until = self.reported = 0.0
        self.missed = 0
        self.lock = threading.Lock()

    def skipping(self) -> bool:
        if time.monotonic() >= self.until:
            return False
        with self.lock:
            self.missed += 1
        return True

    def failed(self, exc: Exception, role: str) -> None:
        now = time.monotonic()
        with self.lock:
            self.missed += 1
            self.until = now + self.PAUSE
            if now - self.reported < self.REPORT:
                return
            self.reported, missed, self.missed = now, self.missed, 0
        log.warning("spend of %d %s call(s) not counted: Redis %s", missed, role, exc.__class__.__name__)


def over_limit(ledger: SpendLedger, project: str, limit: float | None) -> str | None:
    """Why ``project`` may not call the LLM now (its daily limit is spent), or None."""
    if limit is None:
        return None
    try:
        spent = ledger.spent_today(project)
    except redis.RedisError:
        return None
    if spent < limit:
        return None
    return (
        f"daily spend limit reached: {spent:.4f} of {limit:g} spent today (UTC); no LLM calls for this project until "
        "the day turns, or raise daily_spend_limit in its Extra params"
    )


def _quote_dict(found: Quote) -> dict:
    return {"model": found.model, "source": found.source.value, "entry": found.entry,
            "input_per_1m": found.price.input, "output_per_1m": found.price.output}  # fmt: skip


def report(ledger: SpendLedger, settings: Settings, project: str, chosen: ProjectConfig | None, days: int = 14) -> dict:
    """What ``GET /projects/<p>/spend`` answers and the dashboard shows: the last ``days`` UTC days, newest first,
    each with its rows per (role, profile); the limit; and the prices in force for the project's calls."""
    history = []
    for day, found in ledger.days(project, days):
        history.append({
            "day": day,
            "cost": round(sum(r.cost for r in found), 9),
            "calls": sum(r.calls for r in found),
            "prompt_tokens": sum(r.prompt_tokens for r in found),
            "completion_tokens": sum(r.completion_tokens for r in found),
            "unpriced_calls": sum(r.unpriced_calls for r in found),
            "rows": [r.to_dict() for r in found],
        })  # fmt: skip
    limit = chosen.daily_spend_limit if chosen is not None else None
    prices = {PROPOSER: _quote_dict(settings.proposer_quote())}
    if chosen is not None:
        prices[LABELLER] = _quote_dict(_quote(settings, LABELLER, chosen.profile, chosen.labeller_config.model))
    today = history[0]
    return {
        "project": project,
        "currency": "USD",
        "daily_spend_limit": limit,
        "over_limit": limit is not None and today["cost"] >= limit,
        "today": today,
        "days": history,
        "prices": prices,
        "price_table": prices_source(),
    }
