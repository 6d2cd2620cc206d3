"""What the dashboard shows, assembled once for both the HTML pages and their JSON twins.

Every figure comes from the modules the JSON API already reads: policy history (``state.history``), the job queue
(``jobs.queue``, whose finished training jobs hold the optimiser's report as a ``RunSummary``), the coalescer's
per-project run state, the prediction counters behind ``/metrics`` (``runtime.telemetry``), the live quality of
each served version (``runtime.live``, twin ``GET /projects/<p>/quality``) and the spend per day (``runtime.spend``,
twin ``GET /projects/<p>/spend``). Each page renders exactly what its twin route returns, so the two cannot disagree:

- :func:`projects` → ``GET /projects`` and ``/dashboard``;
- :func:`project` → ``/dashboard/projects/<p>`` (its JSON twin is ``GET /projects/<p>/policies``, plus ``show`` and
  ``diff`` per version, which this function calls through the same history object);
- :func:`run` → ``GET /runs/<job>`` and ``/dashboard/runs/<job>``;
- :func:`live` → ``GET /jobs`` and ``/dashboard/live``.
"""

from __future__ import annotations

from dataclasses import asdict

from optimizer.jobs.kinds import JobKind
from optimizer.jobs.queue import JobQueue
from optimizer.jobs.views import JobState, JobView
from optimizer.labelstudio.ids import numeric_id
from optimizer.learning.cost import estimate
from optimizer.learning.curve import reward_curve
from optimizer.project_settings import ProfileGone
from optimizer.runtime import telemetry
from optimizer.runtime.live import LiveQuality
from optimizer.runtime.services import Services
from optimizer.runtime.versions import policy_version
from optimizer.settings import DEFAULT_PROFILE
from optimizer.state.history import UnknownPolicy
from web.spend import project_spend


def label_studio_link(services: Services, project: str) -> str | None:
    """The project's Data Manager in Label Studio, when ``LABEL_STUDIO_URL`` is set."""
    base, number = services.settings.label_studio_url.rstrip("/"), numeric_id(project)
    return f"{base}/projects/{number}/data" if base and number is not None else None


def _run_brief(view: JobView | None) -> dict | None:
    """A training job reduced to what a table row shows: status, outcome, scores, no report."""
    if view is None:
        return None
    summary = view.summary
    return {
        "id": view.id,
        "status": view.status,
        "outcome": summary.status.value if summary else None,
        "promoted": summary.promoted if summary else None,
        "reason": (summary.reason if summary else None) or view.error,
        "scores": (summary.scores if summary else None) or {},
        "ended_at": view.ended_at,
        "enqueued_at": view.enqueued_at,
    }


def _runs_by_project(jobs: JobQueue) -> dict[str, list[JobView]]:
    """Training jobs RQ still keeps, newest first per project, without their results (see :func:`_with_result`)."""
    runs: dict[str, list[JobView]] = {}
    for view in jobs.jobs():
        if view.kind is JobKind.TRAIN and view.project:
            runs.setdefault(view.project, []).append(view)
    return runs


def _with_result(jobs: JobQueue, view: JobView | None) -> JobView | None:
    """The full view of a listed job, result included: fetched only for the runs a page shows an outcome of."""
    if view is None or view.state is not JobState.FINISHED:
        return view
    return jobs.view(view.id) or view


def _live_scores(entries) -> dict:
    live = next((e for e in entries if e.live), None)
    record = live.record if live is not None else {}
    scores = record.get("scores") if isinstance(record.get("scores"), dict) else {}
    return {
        "val_score": record.get("val_score", scores.get("val_score")),
        "test_score": record.get("test_score", scores.get("test_score")),
    }


def settings_view(services: Services, project: str) -> dict:
    """The project's effective LLM settings as the policy API shows them, or the reason they cannot be used."""
    try:
        return services.project_settings(project).public()
    except ProfileGone as exc:
        return {"error": str(exc)}


def live_headline(services: Services, project: str) -> dict:
    """The version answering the project now: its live F1, the annotations behind it, and any version flagged."""
    live = LiveQuality(services)
    versions = live.versions(project)
    last = services.served.last_answered(project) or {}
    now = next((v for v in versions if v.version == last.get("version")), versions[-1] if versions else None)
    return {
        "version": now.version if now else None,
        "annotations": now.overall.n if now else 0,
        "f1": round(now.overall.mean, 6) if now and now.overall.mean is not None else None,
        "flagged": [v.version for v in versions if v.gate is not None and v.gate.flagged],
    }


def projects(services: Services) -> dict:
    """One row per project: live version, pin, last run, live scores, predictions served and the empty share, live
    F1 of the version answering now, and today's spend."""
    counts = telemetry.prediction_counts()
    jobs = JobQueue(services)
    runs = _runs_by_project(jobs)
    rows = []
    for project in services.projects.all():
        entries = services.history.entries(project)
        served = counts.get(project, {"served": 0, "empty": 0, "reasons": {}})
        rows.append(
            {
                "project": project,
                "id": numeric_id(project),
                "live": next((e.version for e in entries if e.live), None),
                "versions": len(entries),
                "pinned": services.history.pinned(project) is not None,
                "last_run": _run_brief(_with_result(jobs, next(iter(runs.get(project, ())), None))),
                **_live_scores(entries),
                "predictions": served["served"],
                "empty": served["empty"],
                "empty_share": round(served["empty"] / served["served"], 4) if served["served"] else None,
                "empty_reasons": served["reasons"],
                "label_studio": label_studio_link(services, project),
                "settings": settings_view(services, project),
                "live_quality": live_headline(services, project),
                "spend_today": round(services.spend.spent_today(project), 9),
            }
        )
    return {"projects": rows}


def project(services: Services, project: str) -> dict:
    """A project's versions, newest first, each with its body and its diff against its parent; its runs; its state."""
    history, jobs = services.history, JobQueue(services)
    entries = history.entries(project)
    served: dict[str, list[dict]] = {}
    for name, made_of in sorted(services.projects.served_versions(project).items(), key=lambda kv: -kv[1].get("at", 0)):
        served.setdefault(made_of.get("policy") or policy_version(name), []).append({"version": name, **made_of})
    versions = []
    for entry in entries:
        try:
            body = history.policy(project, entry.version).to_dict()
        except UnknownPolicy:
            body = None  # recorded, but its body is gone from Redis: list it, show no text
        item = {**entry.to_dict(), "policy": body, "served_as": served.get(entry.version, [])}
        parent = entry.record.get("parent")
        if parent and parent != entry.version:
            try:
                item["diff"] = history.diff(project, parent, entry.version)
            except UnknownPolicy:
                item["diff"] = None  # the parent's body is gone (another project's version): nothing to compare
        versions.append(item)
    return {
        "project": project,
        "id": numeric_id(project),
        "live": next((e.version for e in entries if e.live), None),
        "pinned": history.pinned(project),
        "training": services.coalescer.status(project),
        "versions": versions,
        "runs": [_run_brief(_with_result(jobs, v)) for v in _runs_by_project(jobs).get(project, ())],
        "label_studio": label_studio_link(services, project),
        "settings": settings_view(services, project),
        "quality": LiveQuality(services).report(project),
        "spend": project_spend(services, project),
    }


def run(services: Services, job_id: str) -> dict | None:
    """A training run: its job, reward curve, initial and final scores, calls and tokens by role, estimated cost."""
    view = JobQueue(services).view(job_id)
    if view is None:
        return None
    summary = view.summary
    report = (summary.report if summary else None) or {}
    profile = ((summary.settings if summary else None) or {}).get("profile") or DEFAULT_PROFILE
    costs = estimate(report.get("usage") or {}, services.settings.prices(profile))
    job = {k: v for k, v in view.to_dict().items() if k != "result"}
    return {
        "diff": _run_diff(services, view.project, summary.start, summary.candidate) if summary else None,
        "job": job,
        "project": view.project,
        "outcome": _run_brief(view),
        "has_report": bool(report),
        "curve": reward_curve(report).to_dict(),
        "calls": report.get("calls"),
        "budget_calls": report.get("budget_calls"),
        "usage": [asdict(row) for row in costs],
        "cost": round(sum(row.cost for row in costs), 6),
        "priced": any(row.priced for row in costs),
        "seconds": (report.get("timing") or {}).get("seconds"),
        "gold": summary.gold if summary else None,
        "initial": report.get("initial"),
        "best": report.get("best"),
    }


def _run_diff(services: Services, project: str | None, start: str | None, candidate: str | None) -> dict | None:
    """What the run did to the prompt: its starting policy against its best candidate (kept in history either way)."""
    if not (project and start and candidate) or start == candidate:
        return None
    try:
        return services.history.diff(project, start, candidate)
    except UnknownPolicy:
        return None  # the starting prompt was typed by annotators and never stored as a version


def live(services: Services) -> dict:
    """Jobs running, queued or waiting now, with their progress; follow-ups reserved but not yet in RQ included.

    A bulk pre-annotation run is one row however many chunk jobs it runs as: its plan job's view, which counts the
    whole run's tasks (``JobQueue.view``), stands in for its active chunks.
    """
    queue = JobQueue(services)
    jobs, runs = [], []
    for view in queue.active():
        run = view.run if view.kind is JobKind.BULK_CHUNK else None
        if run is None:
            jobs.append(_progress(view))
        elif run not in runs:
            runs.append(run)
    listed = {job["id"] for job in jobs}
    for run in runs:
        view = queue.view(run) if run not in listed else None
        if view is not None:
            jobs.append(_progress(view))
            listed.add(run)
    for name in services.projects.all():
        followup = services.coalescer.status(name)["followup"]
        if followup and followup not in listed:
            view = queue.view(followup)
            if view is not None:
                jobs.append(_progress(view))
    return {"jobs": jobs}


def _progress(view: JobView) -> dict:
    """A job's live progress in a few fields: phase, optimiser step, calls spent of the budget, tasks done."""
    step = view.optimizer
    phase, done, total, outcomes = view.phase, view.done, view.total, {}
    if view.progress is not None:  # a bulk pre-annotation run: tasks handled so far, by outcome, of the run's total
        outcomes = dict(view.progress.tasks)
        done, total = sum(outcomes.values()), view.progress.total
        phase = f"{view.progress.chunks_active} of {view.progress.chunks} chunks active"
    if step.calls is not None and step.budget:
        fraction = min(1.0, step.calls / step.budget)
    elif done is not None and total:
        fraction = min(1.0, done / total)
    else:
        fraction = None
    return {
        "id": view.id,
        "status": view.status,
        "project": view.project,
        "kind": view.kind.value if view.kind else None,
        "has_run_page": view.kind is JobKind.TRAIN,  # a run page shows a training run's report
        "phase": phase,
        "step": step.step,
        "calls": step.calls,
        "budget": step.budget,
        "done": done,
        "total": total,
        "fraction": round(fraction, 4) if fraction is not None else None,
        "enqueued_at": view.enqueued_at,
        "started_at": view.started_at,
        "note": view.note,
        "outcomes": outcomes,
        "state": view.state.value,
        # Training and bulk runs can be stopped (a chunk's row is its run's); not twice, and not once ended.
        "cancellable": view.kind in (JobKind.TRAIN, JobKind.BULK) and view.cancel is None and not view.state.ended,
        "cancelled_by": view.cancel.by if view.cancel else None,
    }
