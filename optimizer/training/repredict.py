"""Re-annotation after a promotion: predict the project's unlabelled tasks with the new policy, post them to LS.

Runs only for the version it was queued for: if the live policy changed again before or while it runs, it stops,
because predictions tagged with a superseded ``model_version`` would be re-predicted by Label Studio anyway.
Tasks that already carry a prediction of this version are skipped, so a re-run after a crash does not duplicate.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from optimizer.labelstudio.client import LabelStudioClient, LabelStudioError
from optimizer.labelstudio.labelconfig import LabelConfigError, parse_label_config
from optimizer.runtime.services import Services
from optimizer.serving.labelling import ls_predictions, task_texts
from optimizer.state.projects import numeric_id
from optimizer.training.run import TrainingError, label_studio


def _has_version(task: dict, version: str) -> bool:
    return any(isinstance(p, dict) and p.get("model_version") == version for p in task.get("predictions") or [])


def repredict_project(
    services: Services,
    project: str,
    version: str,
    progress: Callable[..., None],
    *,
    ls: LabelStudioClient | None = None,
) -> dict:
    number = numeric_id(project)
    if number is None:
        raise TrainingError(f"project {project!r} is not a Label Studio project id")
    policy = services.store.current(project)
    if policy.version != version:
        return {"status": "superseded", "version": version, "live": policy.version, "posted": 0}
    ls = ls or label_studio(services)
    try:
        schema = parse_label_config(services.projects.label_config(project) or ls.label_config(number))
        tasks = [t for t in ls.tasks(number) if not t.get("annotations") and not _has_version(t, version)]
    except LabelConfigError as exc:
        raise TrainingError(f"the project's label config cannot be used: {exc}") from None
    except LabelStudioError as exc:
        raise TrainingError(str(exc)) from None

    batch = services.settings.repredict_batch
    posted = empty = 0
    progress(phase="predicting", total=len(tasks), done=0, posted=0)
    for start in range(0, len(tasks), batch):
        if services.store.current(project).version != version:
            return {"status": "superseded", "version": version, "posted": posted, "total": len(tasks)}
        chunk = tasks[start : start + batch]
        deadline = time.monotonic() + services.settings.predict_deadline
        predictions = services.predictor.predict_many(policy, schema, task_texts(schema, chunk), deadline=deadline)
        results = ls_predictions(schema, policy, predictions, chunk)
        payload = [{"task": t["id"], **r} for t, r in zip(chunk, results, strict=True) if r is not None]
        empty += len(chunk) - len(payload)
        if payload:
            try:
                posted += ls.import_predictions(number, payload)
            except LabelStudioError as exc:
                raise TrainingError(f"{exc} (posted {posted} of {len(tasks)} before the failure)") from None
        progress(phase="predicting", total=len(tasks), done=start + len(chunk), posted=posted)
    return {"status": "done", "version": version, "total": len(tasks), "posted": posted, "empty": empty}
