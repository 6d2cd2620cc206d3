"""Bulk pre-annotation: predict many tasks with the project's current policy in RQ jobs and post them to Label Studio.

Why jobs: Label Studio gives ``/predict`` 100 s, and a long task costs the embedded model 2-6 s, so a Retrieve
Predictions of hundreds of tasks can never finish inside one request. ``/predict`` therefore answers what it can and
queues the rest here (the tasks its deadline cut off, and every task past ``PREDICT_SYNC_MAX``); ``POST
/projects/<id>/predict`` and ``python -m optimizer predict`` queue a run on purpose, and a promotion queues one for
the unlabelled tasks when ``REPREDICT_AFTER_PROMOTE`` is on.

A run is a **plan** job and **chunk** jobs. The plan lists the tasks lacking a prediction of the version (all of the
project's, or the ids asked for) and queues one chunk job per ``BULK_CHUNK`` tasks, so ``--scale worker=N`` runs N
chunks at once. A chunk claims its tasks (:mod:`optimizer.state.bulk`), reads them again from Label Studio, skips
any that gained a prediction of the version meanwhile, predicts the rest with the same predictor and mapping as
``/predict``, and posts the answers in one request under the same ``model_version`` ``/setup`` reports (the policy's,
the label config's and the model's parts: :mod:`optimizer.runtime.versions`).

Why this never duplicates: a task is predicted only under its claim, and Label Studio is read again after the claim
is taken, so a second run, a second worker or a retry after a SIGKILL sees what the first one posted. A worker that
dies mid-chunk leaves its claims to expire (``BULK_CLAIM_TTL``); a later run claims and finishes those tasks. A run
stops predicting as soon as the live policy changes, since its predictions would be re-requested anyway.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import redis

from optimizer.jobs.errors import JobError, label_studio, project_config
from optimizer.labelstudio.client import LabelStudioClient, LabelStudioError
from optimizer.labelstudio.ids import numeric_id
from optimizer.labelstudio.labelconfig import LabelConfigError, Schema, parse_label_config
from optimizer.runtime.live import LiveQuality
from optimizer.runtime.services import Services
from optimizer.runtime.spend import over_limit
from optimizer.runtime.versions import served_version
from optimizer.serving.labelling import ls_predictions, task_texts
from optimizer.serving.payer import paying
from optimizer.serving.policy import Policy
from optimizer.serving.predictor import FailureReason, Prediction

log = logging.getLogger("optimizer.jobs.bulk")

SUPERSEDED = "superseded"


def has_version(task: dict, version: str) -> bool:
    return any(isinstance(p, dict) and p.get("model_version") == version for p in task.get("predictions") or [])


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


def _schema(services: Services, project: str, ls: LabelStudioClient) -> Schema:
    try:
        return parse_label_config(services.projects.label_config(project) or ls.label_config(_number(project)))
    except LabelConfigError as exc:
        raise JobError(f"the project's label config cannot be used: {exc}") from None
    except LabelStudioError as exc:
        raise JobError(str(exc)) from None


def plan_run(
    services: Services,
    run_id: str,
    request: BulkRequest,
    enqueue_chunk: Callable[[str, int, list[int]], str],
    *,
    ls: LabelStudioClient | None = None,
) -> dict:
    """List what lacks a prediction of the version and queue the chunk jobs; returns the plan's summary."""
    number = _number(request.project)
    live = services.store.current(request.project).version
    if live != request.version:
        return {"status": SUPERSEDED, "version": request.version, "live": live, "total": 0, "chunks": 0}
    ls = ls or label_studio(services)
    served = _served(services, request.project, request.version, _schema(services, request.project, ls))
    try:
        listed = list(ls.tasks(number, ids=request.tasks))
    except LabelStudioError as exc:
        raise JobError(str(exc)) from None
    todo = [
        int(t["id"])
        for t in listed
        if not has_version(t, served) and not (request.skip_annotated and t.get("annotations"))
    ]
    size = services.settings.bulk_chunk
    parts = [todo[i : i + size] for i in range(0, len(todo), size)]
    chunks = [f"{run_id}-{n}" for n in range(len(parts))]
    record = {"project": request.project, "version": request.version, "served": served, "reason": request.reason,
              "total": len(todo), "listed": len(listed), "chunks": chunks,
              "created_at": round(time.time(), 3)}  # fmt: skip
    services.bulk.start_run(run_id, record, ttl=services.settings.job_result_ttl)
    if request.tasks is not None:
        missing = len(set(request.tasks) - {int(t["id"]) for t in listed})
        services.bulk.count(run_id, request.project, {"missing": missing})
    services.bulk.count(run_id, request.project, {"skipped": len(listed) - len(todo)})
    for n, part in enumerate(parts):
        enqueue_chunk(chunks[n], n, part)
    return {"status": "planned", "version": request.version, "served": served, "total": len(todo),
            "chunks": len(chunks)}  # fmt: skip


def _served(services: Services, project: str, policy_version: str, schema: Schema) -> str:
    """The ``model_version`` a bulk run posts under: the same as ``/setup``'s for this policy, config and model."""
    return served_version(policy_version, schema, project_config(services, project))


POST_ATTEMPTS = 3
POST_PAUSE = 0.5  # seconds before the first retry, doubled each time


def post_once(
    ls: LabelStudioClient, number: int, version: str, payload: list[dict], *, attempts: int = POST_ATTEMPTS
) -> tuple[list[int], int]:
    """Post ``payload`` so that each task ends up with one prediction of ``version``, whatever fails on the way.

    An import that errors may still have been committed, so a retry first reads the tasks back and sends only those
    still lacking the version. Returns the task ids Label Studio now holds from this payload and the retries it
    took; raises :class:`JobError` naming the last error when Label Studio stays unavailable (the chunk's
    claims are then released, and the next run re-reads before it posts).
    """
    pending = {int(p["task"]): p for p in payload}
    held: list[int] = []
    for attempt in range(attempts):
        if attempt:
            time.sleep(POST_PAUSE * 2 ** (attempt - 1))
            try:
                landed = [int(t["id"]) for t in ls.tasks(number, ids=list(pending)) if has_version(t, version)]
            except LabelStudioError as exc:
                error = exc
                continue
            held += landed
            for task in landed:
                pending.pop(task)
            if not pending:
                return held, attempt
            log.warning("re-posting %d of %d predictions after: %s", len(pending), len(payload), error)
        try:
            ls.import_predictions(number, list(pending.values()))
        except LabelStudioError as exc:
            error = exc
            continue
        return held + list(pending), attempt
    raise JobError(f"{error} (while posting {len(payload)} predictions, {attempts} attempts)")


class _ClaimBeat(threading.Thread):
    """Renews this chunk's claims every third of their TTL while it predicts, so a slow LLM never loses them."""

    def __init__(self, services: Services, project: str, version: str, holder: str, tasks: Sequence[int]) -> None:
        super().__init__(name=f"claims-{holder}", daemon=True)
        self.args = (project, version, list(tasks), holder)
        self.ledger, self.ttl = services.bulk, services.settings.bulk_claim_ttl
        self._stop_event = threading.Event()

    def run(self) -> None:
        project, version, tasks, holder = self.args
        while not self._stop_event.wait(self.ttl / 3):
            try:
                self.ledger.renew(project, version, tasks, holder, self.ttl)
            except Exception:  # a Redis blip: the claim outlives two missed beats
                log.warning("chunk %s: claim heartbeat failed", holder, exc_info=True)

    def stop(self) -> None:
        self._stop_event.set()


def run_chunk(
    services: Services,
    run_id: str,
    project: str,
    version: str,
    tasks: Sequence[int],
    holder: str,
    progress: Callable[..., None] = lambda **_: None,
    *,
    ls: LabelStudioClient | None = None,
) -> dict:
    """Predict and post ``tasks`` under their claims; tasks another live job holds are waited for, not redone."""
    number = _number(project)
    ls = ls or label_studio(services)
    schema = _schema(services, project, ls)
    ledger, ttl = services.bulk, services.settings.bulk_claim_ttl
    remaining = list(dict.fromkeys(int(t) for t in tasks))
    totals: Counter[str] = Counter()
    unpredicted: Counter[str] = Counter()  # tasks this chunk leaves alone, counted once at the end
    give_up = time.monotonic() + 2 * ttl + 5  # a dead holder's claims lapse within one TTL
    served = _served(services, project, version, schema)
    while remaining:
        policy = services.store.current(project)
        # A new policy, label config or model: these predictions would be asked for again under the new version.
        if policy.version != version or _served(services, project, policy.version, schema) != served:
            unpredicted[SUPERSEDED] += len(remaining)
            break
        claims = ledger.claim(project, served, remaining, holder, ttl)
        unpredicted["skipped"] += len(claims.done)
        if claims.claimed:
            outcome = _predict_and_post(services, ls, number, schema, policy, served, project, holder, claims.claimed)
            totals.update(outcome)
            ledger.count(run_id, project, outcome)
            progress(phase="predicting", done=sum(totals.values()), total=len(tasks))
        elif claims.busy and time.monotonic() > give_up:
            unpredicted["busy"] += len(claims.busy)
            break
        elif claims.busy:
            time.sleep(min(1.0, ttl / 10))
        remaining = claims.busy
    ledger.count(run_id, project, unpredicted)
    totals.update(unpredicted)
    return {"status": "done", "version": version, "served": served, **dict(+totals)}


def _predict_and_post(
    services: Services,
    ls: LabelStudioClient,
    number: int,
    schema: Schema,
    policy: Policy,
    version: str,
    project: str,
    holder: str,
    claimed: list[int],
) -> Counter[str]:
    """``version`` is the served ``model_version`` the predictions go under (and the claims are held for)."""
    ledger, ttl = services.bulk, services.settings.bulk_claim_ttl
    outcome: Counter[str] = Counter()
    beat = _ClaimBeat(services, project, version, holder, claimed)
    beat.start()
    posted: list[int] = []
    already: list[int] = []
    try:
        try:
            fresh = {int(t["id"]): t for t in ls.tasks(number, ids=claimed)}
        except LabelStudioError as exc:
            raise JobError(str(exc)) from None
        outcome["missing"] = len(set(claimed) - set(fresh))
        already = [i for i, t in fresh.items() if has_version(t, version)]
        outcome["skipped_in_ls"] = len(already)
        todo = [t for i, t in fresh.items() if i not in set(already)]
        chosen = project_config(services, project)
        refused = over_limit(services.spend, project, chosen.daily_spend_limit)
        if refused:
            predictions = [Prediction.failed(FailureReason.BUDGET, refused) for _ in todo]
        else:
            with paying(project, chosen.profile):
                predictor = services.predictor_for(chosen.labeller_config)  # the project's profile
                predictions = predictor.predict_many(policy, schema, task_texts(schema, todo))
        answers = ls_predictions(schema, policy, predictions, todo, version=version)
        for prediction in predictions:
            if prediction.error is not None:
                outcome[f"failed_{prediction.error.reason.value}"] += 1
        held = ledger.renew(project, version, [int(t["id"]) for t in todo], holder, ttl)
        payload = [
            {"task": int(t["id"]), **a} for t, a in zip(todo, answers, strict=True) if a and int(t["id"]) in held
        ]
        outcome["lost_claim"] = sum(1 for t, a in zip(todo, answers, strict=True) if a and int(t["id"]) not in held)
        if payload:
            posted, retries = post_once(ls, number, version, payload)
            outcome["post_retries"] = retries
            _remember(services, project, schema, todo, answers, set(posted))
        outcome["posted"] = len(posted)
    finally:
        beat.stop()
        ledger.finish(project, version, holder, done=posted + already, release=claimed)
    return +outcome


def _remember(services: Services, project: str, schema: Schema, todo: list, answers: list, posted: set[int]) -> None:
    """What Label Studio now holds, for scoring these tasks' annotations (``optimizer.runtime.live``)."""
    pairs = [(t, a) for t, a in zip(todo, answers, strict=True) if a and int(t["id"]) in posted]
    try:
        LiveQuality(services).remember(project, schema, [t for t, _ in pairs], [a for _, a in pairs])
    except redis.RedisError as exc:
        log.warning("chunk of project %s: %d answers not recorded for live quality: %s", project, len(pairs),
                    exc.__class__.__name__)  # fmt: skip
