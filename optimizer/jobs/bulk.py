"""Bulk pre-annotation: predict many tasks with the project's current policy in RQ jobs and post them to Label Studio.

Why jobs: Label Studio gives ``/predict`` 100 s, and a long task costs the embedded model 2-6 s, so a Retrieve
Predictions of hundreds of tasks can never finish inside one request. ``/predict`` therefore answers what it can and
queues the rest here (the tasks its deadline cut off, and every task past ``PREDICT_SYNC_MAX``); ``POST
/projects/<id>/predict`` and ``python -m optimizer predict`` queue a run on purpose, and a promotion queues one for
the unlabelled tasks when ``REPREDICT_AFTER_PROMOTE`` is on.

A run is a **plan** job and **chunk** jobs, all on the bulk queue. The plan pages through the ids of the tasks
lacking a prediction of the version (a Data Manager filter: only ids come back, a page at a time, each page asking
for ids above the last one seen) and queues one chunk job per ``BULK_CHUNK`` tasks as it goes, so the first chunk
predicts while the plan still reads, and the plan holds one page, never the project. A chunk claims its tasks
(:mod:`optimizer.state.bulk`), reads them again from Label Studio through the same filter (only ``id`` and
``data``), predicts the rest with the same predictor and mapping as ``/predict``, and posts the answers in one
request under the ``model_version`` ``/setup`` reports (the policy's, the label config's and the model's parts:
:mod:`optimizer.runtime.versions`). The worker runs several chunks at once in threads
(``BULK_THREADS``), so one chunk's reads and post overlap the next one's LLM calls.

Why this never duplicates: a task is predicted only under its claim, and Label Studio is read again after the claim
is taken, so a second run, a second worker or a retry after a SIGKILL sees what the first one posted. A worker that
dies mid-chunk leaves its claims to expire (``BULK_CLAIM_TTL``) and RQ retries the chunk. A run stops predicting as
soon as the live policy, the label config or the model changes, since its predictions would be re-requested anyway,
and stops posting within one chunk of a cancel (:mod:`optimizer.state.cancels`). A project past its daily spend
limit gets no prediction (``failed_budget``), and what is posted is remembered to score its annotations by.

What fails is typed (:class:`optimizer.jobs.outcomes.TaskFailure`): a Label Studio 5xx or timeout, or an LLM call
that timed out or was refused with 429/5xx, is *retryable*, and the chunk asks RQ for another attempt for those
tasks (``BULK_RETRIES``, with backoff); anything else (an answer with no valid label, a 401) fails at once. A task
still failing after the chunk's last attempt is counted as ``failed_<reason>`` and kept with its reason for ``GET
/jobs/<id>``. Posting goes through :func:`optimizer.jobs.posting.post_once`, and claims are kept alive by
:class:`optimizer.jobs.claim_beat.ClaimBeat`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import redis

from optimizer.jobs.claim_beat import ClaimBeat
from optimizer.jobs.errors import JobError, label_studio, project_config
from optimizer.jobs.outcomes import ChunkResult, FailureKind, TaskOutcome
from optimizer.jobs.posting import post_once
from optimizer.labelstudio.client import LabelStudioClient, LabelStudioError, LabelStudioUnavailable
from optimizer.labelstudio.ids import numeric_id
from optimizer.labelstudio.labelconfig import LabelConfigError, Schema, parse_label_config
from optimizer.runtime.live import LiveQuality
from optimizer.runtime.services import Services
from optimizer.runtime.spend import over_limit
from optimizer.runtime.versions import served_version
from optimizer.serving.labelling import ls_predictions, task_texts
from optimizer.serving.llm_errors import LLMUnavailable
from optimizer.serving.payer import paying
from optimizer.serving.policy import Policy
from optimizer.serving.predictor import FailureReason, Prediction
from optimizer.state.cancels import Cancel

log = logging.getLogger("optimizer.jobs.bulk")

Cancelled = Callable[[], Cancel | None]


def _failure(exc: LabelStudioError) -> dict:
    return {"reason": FailureKind.LABEL_STUDIO.value, "detail": str(exc),
            "retryable": isinstance(exc, LabelStudioUnavailable)}  # fmt: skip


@dataclass(frozen=True)
class BulkRequest:
    """What to pre-annotate: ``tasks`` None means every task of the project lacking a prediction of ``version``."""

    project: str
    version: str
    tasks: tuple[int, ...] | None = None
    skip_annotated: bool = False
    reason: str = "api"


def _number(project: str) -> int:
    number = numeric_id(project)
    if number is None:
        raise JobError(f"project {project!r} is not a Label Studio project id")
    return number


_SCHEMAS: dict[str, Schema] = {}  # label config text -> parsed; chunks of one run share the parse
_SCHEMAS_LOCK = threading.Lock()


def _schema(services: Services, project: str, ls: LabelStudioClient) -> Schema:
    try:
        config = services.projects.label_config(project) or ls.label_config(_number(project))
        with _SCHEMAS_LOCK:
            schema = _SCHEMAS.get(config)
        if schema is None:
            schema = parse_label_config(config)
            with _SCHEMAS_LOCK:
                if len(_SCHEMAS) > 64:
                    _SCHEMAS.clear()
                _SCHEMAS[config] = schema
        return schema
    except LabelConfigError as exc:
        raise JobError(f"the project's label config cannot be used: {exc}") from None


def _served(services: Services, project: str, policy_version: str, schema: Schema) -> str:
    """The ``model_version`` a bulk run posts under: the same as ``/setup``'s for this policy, config and model."""
    return served_version(policy_version, schema, project_config(services, project))


@dataclass
class PlanState:
    """How far a plan got, kept in the run's record after every chunk it queues, so a retried plan (Label Studio
    down mid-listing, or a worker that died holding it) goes on from there instead of listing again.

    ``resume``: the last task id queued (a whole-project run, whose listing is in id order), or how many of the asked
    ids are done (a run of named tasks). ``counted``: how far the ``skipped``/``missing`` counts were recorded."""

    resume: int = 0
    counted: int = 0
    queued: int = 0
    chunks: int = 0

    @classmethod
    def of(cls, run: dict) -> PlanState:
        return cls(int(run.get("resume") or 0), int(run.get("counted") or 0), int(run.get("queued") or 0),
                   int(run["chunks"]["queued"]))  # fmt: skip


def _listing(ls: LabelStudioClient, number: int, request: BulkRequest, served: str, state: PlanState, count: Callable):
    """Pages of ``(task ids to predict, position after each id, expected total)`` from where ``state`` says: the
    tasks lacking a prediction of ``served`` (the ``model_version`` the run posts under); ``count`` records the
    tasks left alone (``skipped``, ``missing``) as it goes, each page once."""
    if request.tasks is None:
        total = ls.count(number) if not state.counted else 0
        lacking = 0
        for page in ls.pending(number, served, skip_annotated=request.skip_annotated, after=state.resume):
            if not lacking and not state.counted:  # the first page's total: what lacked the version at the start
                count({TaskOutcome.SKIPPED: max(0, total - page.total)}, 1)
            lacking = lacking or page.total
            yield page.ids, page.ids, state.queued + lacking
        if not lacking and not state.counted:  # nothing lacked it: every task was skipped
            count({TaskOutcome.SKIPPED: total}, 1)
        return
    asked = list(dict.fromkeys(request.tasks))
    size, expected = ls.page_size, state.queued
    for start in range(state.resume - state.resume % size, len(asked), size):
        group = asked[start : start + size]
        existing = ls.existing(number, group)
        todo = {int(t["id"]) for t in ls.lacking(number, served, group, include="id",
                                                 skip_annotated=request.skip_annotated)}  # fmt: skip
        if start + len(group) > state.counted:
            count({TaskOutcome.MISSING: len(group) - len(existing), TaskOutcome.SKIPPED: len(existing) - len(todo)},
                  start + len(group))  # fmt: skip
        kept = [(task, start + i + 1) for i, task in enumerate(group) if task in todo and start + i >= state.resume]
        expected += len(kept)
        yield [task for task, _ in kept], [position for _, position in kept], expected


def plan_run(
    services: Services,
    run_id: str,
    request: BulkRequest,
    enqueue_chunk: Callable[[str, int, list[int]], str],
    *,
    ls: LabelStudioClient | None = None,
    cancelled: Cancelled = lambda: None,
) -> dict:
    """Page through what lacks a prediction of the version and queue a chunk job per ``BULK_CHUNK`` as it goes.

    Raises :class:`LabelStudioError` when Label Studio fails mid-listing; run again (RQ's retry), it goes on from
    the last chunk it queued (:class:`PlanState`)."""
    number = _number(request.project)
    live = services.store.current(request.project).version
    if live != request.version:
        return {"status": TaskOutcome.SUPERSEDED.value, "version": request.version, "live": live, "total": 0,
                "chunks": 0}  # fmt: skip
    ls = ls or label_studio(services)
    served = _served(services, request.project, request.version, _schema(services, request.project, ls))
    ledger, size, ttl = services.bulk, services.settings.bulk_chunk, services.settings.job_result_ttl
    run = ledger.run(run_id)
    if run is None:
        record = {"project": request.project, "version": request.version, "served": served, "reason": request.reason,
                  "total": None, "planned": False, "created_at": round(time.time(), 3)}  # fmt: skip
        ledger.start_run(run_id, record, ttl=ttl)
        state = PlanState()
    else:
        state = PlanState.of(run)
    buffer: list[tuple[int, int]] = []  # (task, listing position after it)

    def count(outcomes: dict, counted: int) -> None:
        ledger.count(run_id, request.project, outcomes)
        state.counted = counted
        ledger.note_run(run_id, {"counted": counted})

    def flush(part: list[tuple[int, int]]) -> None:
        chunk_id = f"{run_id}-{state.chunks}"
        ledger.open_chunk(run_id, chunk_id, ttl)  # before it is queued: a fast chunk may close itself at once
        enqueue_chunk(chunk_id, state.chunks, [task for task, _ in part])
        state.queued, state.chunks, state.resume = state.queued + len(part), state.chunks + 1, part[-1][1]
        ledger.note_run(run_id, {"queued": state.queued, "resume": state.resume})

    planned = bool(run and run.get("planned"))  # a retry after every chunk was queued: nothing left to list
    stopped = cancelled()  # asked to stop while it waited in the queue: list nothing
    listing = () if planned or stopped is not None else _listing(ls, number, request, served, state, count)
    for ids, positions, expected in listing:
        buffer += zip(ids, positions, strict=True)
        while len(buffer) >= size:
            flush(buffer[:size])
            buffer = buffer[size:]
        ledger.note_run(run_id, {"total": max(expected, state.queued + len(buffer))})
        stopped = cancelled()
        if stopped is not None:
            break
    if buffer and stopped is None:
        flush(buffer)
    elif buffer:
        ledger.count(run_id, request.project, {TaskOutcome.CANCELLED: len(buffer)})
    ledger.note_run(run_id, {"total": state.queued, "planned": True})
    status = "cancelled" if stopped is not None else "planned"
    return {"status": status, "version": request.version, "served": served, "total": state.queued,
            "chunks": state.chunks}  # fmt: skip


def run_chunk(
    services: Services,
    project: str,
    version: str,
    tasks: Sequence[int],
    holder: str,
    progress: Callable[..., None] = lambda **_: None,
    *,
    ls: LabelStudioClient | None = None,
    cancelled: Cancelled = lambda: None,
) -> ChunkResult:
    """One attempt at ``tasks``: predict and post them under their claims; tasks another live job holds are waited
    for, not redone. Raises :class:`JobError` only when no attempt can ever work (no project id, a config that
    cannot be served); everything else ends up in the result, each task with its outcome or its failure."""
    number = _number(project)
    ls = ls or label_studio(services)
    remaining = list(dict.fromkeys(int(t) for t in tasks))
    result = ChunkResult()
    try:
        schema = _schema(services, project, ls)
    except LabelStudioError as exc:  # the config is read from Label Studio when /setup never stored it
        result.fail(remaining, **_failure(exc))
        return result
    ledger, ttl = services.bulk, services.settings.bulk_claim_ttl
    give_up = time.monotonic() + 2 * ttl + 5  # a dead holder's claims lapse within one TTL
    served = _served(services, project, version, schema)
    result.served = served
    while remaining:
        if cancelled() is not None:
            result.outcomes[TaskOutcome.CANCELLED] += len(remaining)
            break
        policy = services.store.current(project)
        # A new policy, label config or model: these predictions would be asked for again under the new version.
        if policy.version != version or _served(services, project, policy.version, schema) != served:
            result.outcomes[TaskOutcome.SUPERSEDED] += len(remaining)
            break
        claims = ledger.claim(project, served, remaining, holder, ttl)
        result.outcomes[TaskOutcome.SKIPPED] += len(claims.done)
        if claims.claimed:
            posting = Posting(ls, number, schema, policy, served, project, holder)
            _predict_and_post(services, posting, claims.claimed, result, cancelled)
            done = sum(result.outcomes.values()) + len(result.failures)
            progress(phase="predicting", done=done, total=len(tasks))
        elif claims.busy and time.monotonic() > give_up:
            result.outcomes[TaskOutcome.BUSY] += len(claims.busy)
            break
        elif claims.busy:
            time.sleep(min(1.0, ttl / 10))
        remaining = claims.busy
    return result


@dataclass(frozen=True)
class Posting:
    """What one round of a chunk predicts with and posts under: ``version`` is the served ``model_version``."""

    ls: LabelStudioClient
    number: int
    schema: Schema
    policy: Policy
    version: str
    project: str
    holder: str


def _predict_and_post(
    services: Services, posting: Posting, claimed: list[int], result: ChunkResult, cancelled: Cancelled
) -> None:
    ls, number, schema, policy = posting.ls, posting.number, posting.schema, posting.policy
    version, project, holder = posting.version, posting.project, posting.holder
    ledger, ttl = services.bulk, services.settings.bulk_claim_ttl
    beat = ClaimBeat(services, project, version, holder, claimed)
    beat.start()
    posted: list[int] = []
    already: list[int] = []
    try:
        try:
            fresh = {int(t["id"]): t for t in ls.lacking(number, version, claimed)}
        except LabelStudioError as exc:
            result.fail(claimed, **_failure(exc))
            return
        already = [task for task in claimed if task not in fresh]
        result.outcomes[TaskOutcome.SKIPPED_IN_LS] += len(already)
        todo = list(fresh.values())
        chosen = project_config(services, project)
        refused = over_limit(services.spend, project, chosen.daily_spend_limit)
        try:
            if refused:
                predictions = [Prediction.failed(FailureReason.BUDGET, refused) for _ in todo]
            else:
                with paying(project, chosen.profile):
                    predictor = services.predictor_for(chosen.labeller_config)  # the project's profile
                    predictions = predictor.predict_many(policy, schema, task_texts(schema, todo))
        except LLMUnavailable as exc:  # the endpoint is dead: every task of the chunk waits for the retry
            result.fail(fresh, FailureKind.LLM.value, str(exc), retryable=True)
            return
        answers = ls_predictions(schema, policy, predictions, todo, version=version)
        for task, prediction in zip(todo, predictions, strict=True):
            if prediction.error is not None:
                error = prediction.error
                result.fail([task["id"]], error.reason.value, str(error), retryable=error.retryable)
        answered = [(int(t["id"]), a) for t, a in zip(todo, answers, strict=True) if a]
        if cancelled() is not None:  # stop posting within one chunk of the cancel
            result.outcomes[TaskOutcome.CANCELLED] += len(answered)
            return
        held = ledger.renew(project, version, [task for task, _ in answered], holder, ttl)
        payload = [{"task": task, **answer} for task, answer in answered if task in held]
        result.outcomes[TaskOutcome.LOST_CLAIM] += len(answered) - len(payload)
        if payload:
            try:
                posted, retries = post_once(ls, number, version, payload)
                result.post_retries += retries
            except LabelStudioError as exc:
                result.fail([p["task"] for p in payload], **_failure(exc))
        result.outcomes[TaskOutcome.POSTED] += len(posted)
        if posted:
            _remember(services, project, schema, todo, answers, set(posted))
    finally:
        beat.stop()
        ledger.finish(project, version, holder, done=posted + already, release=claimed)


def _remember(services: Services, project: str, schema: Schema, todo: list, answers: list, posted: set[int]) -> None:
    """What Label Studio now holds, for scoring these tasks' annotations (``optimizer.runtime.live``)."""
    pairs = [(t, a) for t, a in zip(todo, answers, strict=True) if a and int(t["id"]) in posted]
    try:
        LiveQuality(services).remember(project, schema, [t for t, _ in pairs], [a for _, a in pairs])
    except redis.RedisError as exc:
        log.warning("chunk of project %s: %d answers not recorded for live quality: %s", project, len(pairs),
                    exc.__class__.__name__)  # fmt: skip
