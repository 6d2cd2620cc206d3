"""One training run for one project: annotations from Label Studio → gold → the optimiser's loop → gated promotion.

This module knows nothing about RQ (``functions.py`` runs it inside a job): it takes a ``progress`` callback and
returns a :class:`~optimizer.jobs.summary.RunSummary`, or raises :class:`JobError` with a reason a person can
act on.

The live policy is touched at exactly one point: the store's compare-and-set promotion, which applies only if
the live version is still the one this run started from and the project is not pinned. Whatever fails before that
point (Label Studio unreachable, too little gold, the LLM down, the worker killed) leaves the live policy serving.

A run can be cancelled (``POST /jobs/<id>/cancel``): every progress event checks for the request, the optimiser's
included, so the run stops at its next step; and before it promotes the run marks itself as committing
(:meth:`optimizer.state.cancels.CancelRegistry.commit`), so a cancel either stops it before the promotion or is
refused: never half of each.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace

from optimizer.jobs.errors import JobError, label_studio, project_config
from optimizer.jobs.summary import Outcome, RunSummary
from optimizer.labelstudio.client import LabelStudioClient, LabelStudioError
from optimizer.labelstudio.ids import numeric_id
from optimizer.labelstudio.judge import judge_shape
from optimizer.labelstudio.labelconfig import LabelConfigError, Schema, parse_label_config
from optimizer.learning.gold import GoldItem, items_from_tasks
from optimizer.learning.rewards import scoring_for
from optimizer.project_settings import ProjectConfig
from optimizer.runtime.services import Services
from optimizer.runtime.spend import over_limit
from optimizer.serving.llm import LLMClient
from optimizer.serving.llm_errors import LLMUnavailable
from optimizer.serving.payer import paying
from optimizer.serving.policy import Policy
from optimizer.state.cancels import Cancel

log = logging.getLogger("optimizer.jobs.training")

Progress = Callable[..., None]


class RunCancelled(Exception):
    """Raised by a progress event when someone asked the run to stop; caught by :func:`train_project`."""

    def __init__(self, cancel: Cancel) -> None:
        super().__init__(f"cancelled by {cancel.by}")
        self.cancel = cancel


def _scores(policy: Policy) -> dict:
    keys = ("val_score", "test_score", "train_score", "initial_val_score", "initial_test_score")
    return {k: policy.meta[k] for k in keys if k in policy.meta}


def most_typed_prompt(gold: Sequence[GoldItem]) -> str | None:
    """The prompt annotators typed most often into the prompt TextArea (seed 001's starting prompt), if any.

    Ties go to the prompt of the later item, so the choice is deterministic for the same annotations.
    """
    counts = Counter(item.prompt for item in gold if item.prompt)
    if not counts:
        return None
    order = {item.prompt: i for i, item in enumerate(gold) if item.prompt}
    return max(counts, key=lambda prompt: (counts[prompt], order[prompt]))


def _optimize():
    from optimizer.learning.procedure import optimize

    return optimize


REASONS = {
    Outcome.REJECTED: "no candidate beat the starting policy on validation by more than noise",
    Outcome.LEASE_LOST: "this run lost the project's lease (Redis unreachable for a whole TRAIN_LEASE_TTL); "
    "candidate kept",
    Outcome.STALE: "the live policy changed while the job ran (a rollback or another promotion); candidate kept",
    Outcome.PINNED: "the project was pinned while the job ran; candidate kept in history",
    Outcome.UNCHANGED: "the candidate is already live",
    Outcome.SKIPPED: "project is pinned; unpin it to train",
}


def fetch_gold(services: Services, project: str, number: int, ls: LabelStudioClient) -> tuple[Schema, list, dict]:
    """The project's schema, its gold items from Label Studio, and what was used and skipped."""
    try:
        schema = parse_label_config(services.projects.label_config(project) or ls.label_config(number))
        tasks = ls.annotated_tasks(number)
    except LabelConfigError as exc:
        raise JobError(f"the project's label config cannot be used: {exc}") from None
    except LabelStudioError as exc:
        raise JobError(str(exc)) from None
    gold, skipped = items_from_tasks(schema, tasks)
    stats = {"annotated_tasks": len(tasks), "used": len(gold), "skipped": dict(skipped)}
    minimum = services.settings.train_min_gold
    if len(gold) < minimum:
        raise JobError(
            f"only {len(gold)} usable annotated tasks (of {len(tasks)} annotated); "
            f"training needs at least TRAIN_MIN_GOLD={minimum}"
        )
    return schema, gold, stats


def starting_policy(
    services: Services, live: Policy, gold: Sequence[GoldItem], schema: Schema | None = None
) -> tuple[Policy, str]:
    """The live policy; or, while the project still runs on the default, the prompt its annotators typed (or, for
    a reward-scoring config, the judge's default instruction, which is what the project was being served)."""
    if live.version == services.default_policy.version:
        typed = most_typed_prompt(gold)
        if typed:
            return live.with_instruction(typed), "typed prompt"
        served = services.default_for(schema, live)
        if served.version != live.version:
            return served, "judge default"
    return live, "live policy"


def judge_summary(schema: Schema, report: dict) -> dict | None:
    """A judge project's balanced accuracy and kappa, before and after training, on validation and held-out test.

    With a fixed split the test figures are the test split's; with small gold they are means over the held-out
    folds of the nested cross-validation.
    """
    shape = judge_shape(schema)
    if shape is None:
        return None
    name, run, test = shape.control.name, report.get("run") or {}, report.get("test") or {}
    keys = ("balanced_accuracy", "kappa", "accuracy", "n")
    out = {}
    for when, val_key in (("initial", "initial_val"), ("best", "champion_val")):
        val = ((run.get(val_key) or {}).get("controls") or {}).get(name) or {}
        held = test.get(when) or {}
        entry = {"validation": {k: val.get(k) for k in keys}}
        if name in (held.get("controls") or {}):
            entry["test"] = {k: held["controls"][name].get(k) for k in keys}
        elif "reward" in held:
            entry["test"] = _fold_means(report.get("folds") or [], name, when)
        out[when] = entry
    return out


def _fold_means(folds: list[dict], name: str, when: str) -> dict:
    """Balanced accuracy and kappa on each held-out fold (small gold), averaged: each fold's search never saw it."""
    key = "initial_test" if when == "initial" else "champion_test"
    per = [((f.get(key) or {}).get("controls") or {}).get(name) for f in folds]
    per = [m for m in per if m]
    if not per:
        return {"folds": 0}
    mean = {k: round(sum(m[k] for m in per) / len(per), 6) for k in ("balanced_accuracy", "kappa", "accuracy")}
    return {**mean, "n": sum(m["n"] for m in per), "folds": len(per)}


# A run stops once this many calls failed on connection or auth with none answered (see LLMUnavailable).
FAIL_FAST_AFTER = 3


def llm_clients(services: Services, chosen: ProjectConfig) -> tuple[LLMClient, LLMClient]:
    """The labeller and proposer of one run, probed: a dead endpoint fails the job in seconds with its reason,
    instead of spending the budget on connection errors. Their own clients, so the web's never stop early."""
    labeller = services.labeller_for(replace(chosen.labeller_config, fail_fast_after=FAIL_FAST_AFTER))
    proposer = services.instrument(
        LLMClient(replace(services.settings.proposer_config(), fail_fast_after=FAIL_FAST_AFTER)), "proposer"
    )
    try:
        for base_url in dict.fromkeys((labeller.config.base_url, proposer.config.base_url)):
            (labeller if labeller.config.base_url == base_url else proposer).probe()
    except LLMUnavailable as exc:
        raise JobError(str(exc)) from None
    return labeller, proposer


def train_project(
    services: Services,
    project: str,
    job_id: str,
    progress: Progress,
    *,
    ls: LabelStudioClient | None = None,
    optimize: Callable | None = None,
    lease_lost: Callable[[], bool] = lambda: False,
) -> RunSummary:
    """Run the optimiser on the project's annotations and promote what it accepts.

    ``lease_lost`` tells whether this run lost the project's lease (its heartbeat stopped reaching Redis for a
    whole TTL): another run may then be working on the project, so this one keeps its candidate in history and
    leaves promotion to that run.
    """
    store = services.store
    number = numeric_id(project)
    if number is None:
        raise JobError(f"project {project!r} is not a Label Studio project id; cannot fetch its annotations")
    if services.history.pinned(project) is not None:
        return RunSummary(Outcome.SKIPPED, reason=REASONS[Outcome.SKIPPED])
    live = store.current(project)
    if store.degraded:
        raise JobError("Redis is unavailable; not training against a policy that may be stale")
    spent = {"calls": 0}  # the optimiser's latest count, for a cancelled run's summary

    def report(**fields) -> None:
        """Record progress, then stop here if someone asked: every event is a safe place to stop."""
        event = fields.get("optimizer")
        if isinstance(event, dict) and isinstance(event.get("calls"), int):
            spent["calls"] = event["calls"]
        progress(**fields)
        cancel = services.cancels.requested(job_id)
        if cancel is not None:
            raise RunCancelled(cancel)

    try:
        return _train(services, project, job_id, report, live, number, ls, optimize, lease_lost)
    except RunCancelled as stop:
        return _cancelled(project, live, stop.cancel, spent["calls"])


def _cancelled(project: str, live: Policy, cancel: Cancel, calls: int) -> RunSummary:
    log.info("project %s: training run cancelled by %s after %d calls; nothing promoted", project, cancel.by, calls)
    return RunSummary(Outcome.CANCELLED, project=project, live_before=live.version, calls=calls,
                      reason=f"cancelled by {cancel.by} after {calls} LLM calls; nothing was promoted",
                      cancelled_by=cancel.to_dict())  # fmt: skip


def _train(
    services: Services,
    project: str,
    job_id: str,
    progress: Progress,
    live: Policy,
    number: int,
    ls: LabelStudioClient | None,
    optimize: Callable | None,
    lease_lost: Callable[[], bool],
) -> RunSummary:
    settings, store = services.settings, services.store
    chosen = project_config(services, project)
    refused = over_limit(services.spend, project, chosen.daily_spend_limit)
    if refused:
        raise JobError(refused)
    labeller, proposer = llm_clients(services, chosen)
    progress(phase="fetching annotations")
    schema, gold, stats = fetch_gold(services, project, number, ls or label_studio(services))
    progress(phase="gold ready", gold=stats)
    initial, seeded_from = starting_policy(services, live, gold, schema)
    progress(phase="optimizing", start=initial.version, seeded_from=seeded_from)
    scoring = scoring_for(schema, settings.train_reward)
    started = time.monotonic()
    try:
        with paying(project, chosen.profile):  # every call of the run is charged to the project
            result = (optimize or _optimize())(
                initial,
                schema,
                gold,
                labeller,
                proposer,
                budget_calls=chosen.budget,
                verifiers=chosen.verifiers() or None,
                seed=settings.train_seed,
                # Leave the job time to record and promote before RQ's JOB_TIMEOUT stops it.
                max_seconds=min(settings.optimize_max_seconds, 0.9 * settings.job_timeout),
                progress=lambda event: progress(phase="optimizing", optimizer=event),
                scoring=scoring,
            )
    except LLMUnavailable as exc:  # the endpoint died mid-run: fail with its reason; nothing was promoted
        raise JobError(str(exc)) from None
    best = result.best
    summary = RunSummary(
        Outcome.REJECTED,
        project=project,
        live_before=live.version,
        start=initial.version,
        seeded_from=seeded_from,
        candidate=best.version,
        accepted=bool(result.accepted),
        scores=_scores(best),
        calls=result.calls,
        seconds=round(time.monotonic() - started, 2),
        gold=stats,
        verifier=scoring.verifier,
        settings=chosen.public(),
        judge=judge_summary(schema, result.report),
        report=result.report,
    )
    info = {"job": job_id, "source": "train", "derived_from": initial.version, "scores": _scores(best)}
    cancel = services.cancels.commit(job_id)  # from here on a cancel is refused; one that came first wins
    if cancel is not None:
        raise RunCancelled(cancel)
    if not result.accepted or best.version == live.version:
        status = Outcome.REJECTED
    elif lease_lost():
        status = Outcome.LEASE_LOST
    else:
        progress(phase="promoting", candidate=best.version)
        promoted = store.promote(project, best, live.version, **info)
        if promoted.ok:
            log.info("project %s: promoted %s (was %s) by job %s", project, best.version, live.version, job_id)
            return replace(summary, status=Outcome.PROMOTED, promoted=True, live_after=best.version)
        status = Outcome(promoted.status.value)
    store.record(project, best, parent=live.version, status=status, **info)
    return replace(summary, status=status, reason=REASONS[status])
