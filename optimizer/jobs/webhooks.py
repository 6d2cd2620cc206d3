"""What each Label Studio webhook does. Must answer well within LS's 1 s timeout: it only touches Redis.

- ``START_TRAINING`` (the "Start training" button, ``ml.train``, ``min_annotations_to_start_training``): queue a
  training run now (coalesced with any queued or follow-up run).
- ``ANNOTATION_CREATED`` / ``ANNOTATION_UPDATED``: count it; the ``RETRAIN_EVERY_N``-th since the last run queues a
  run (0 turns this off).
- everything else (``ANNOTATIONS_DELETED``, ``PROJECT_UPDATED``, ...): acknowledged and recorded.

Annotation events also move the live quality figures (``optimizer.runtime.live``): a created or updated annotation
is scored against what the backend answered for its task, replacing its earlier score; a deleted one is taken out.

Every webhook refreshes the project's stored label config (payloads carry the whole project) and is recorded as
a short summary in the project's capped event log. The answer carries ``"job"`` whenever a run will serve the
trigger: Label Studio records a training job when it sees that key.
"""

from __future__ import annotations

import logging

import redis

from optimizer.jobs.queue import JobQueue
from optimizer.project_settings import ProfileGone
from optimizer.runtime.live import LiveQuality
from optimizer.runtime.services import Services
from optimizer.state.coalesce import TriggerStatus

log = logging.getLogger("optimizer.jobs.webhooks")

START_TRAINING = "START_TRAINING"
ANNOTATION_EVENTS = frozenset({"ANNOTATION_CREATED", "ANNOTATION_UPDATED"})


class WebhookError(ValueError):
    """The webhook cannot be acted on as sent (a 400); ``field`` names what is missing."""

    field = "project"


class WebhookUnavailable(RuntimeError):
    """Redis is down: the trigger could not be recorded (a 503, so Label Studio's log shows it)."""


def _summary(action: str, payload: dict) -> dict:
    """A small, secret-free description of the event (payloads carry the project's API token)."""
    out: dict = {}
    annotation = payload.get("annotation")
    if isinstance(annotation, dict):
        for key in ("id", "task", "completed_by", "was_cancelled", "ground_truth"):
            if key in annotation:
                out[f"annotation_{key}" if key != "task" else "task"] = annotation[key]
    annotations = payload.get("annotations")
    if isinstance(annotations, list):
        ids = [a.get("id") for a in annotations if isinstance(a, dict)]
        out["annotation_ids"] = ids[:50]
        out["count"] = len(ids)
    return out


class WebhookHandler:
    def __init__(self, services: Services, jobs: JobQueue | None = None) -> None:
        self.services = services
        self.jobs = jobs or JobQueue(services)

    def handle(self, project: str | None, action: str, payload: dict) -> dict:
        if project is None:
            if action == START_TRAINING or action in ANNOTATION_EVENTS:
                raise WebhookError(f'{action} webhook has no "project": cannot tell which project to train')
            return {"status": "ignored", "reason": "no project in payload"}
        try:
            return self._handle(project, action, payload)
        except redis.RedisError as exc:
            log.error("webhook %s for project %s: Redis unavailable (%s)", action, project, exc.__class__.__name__)
            raise WebhookUnavailable("Redis is unavailable; the event was not recorded, retry later") from None

    def _handle(self, project: str, action: str, payload: dict) -> dict:
        info = payload.get("project")
        config = info.get("label_config") if isinstance(info, dict) else None
        self.services.projects.seen(project, config if isinstance(config, str) else None)
        quality = self._score(project, action, payload)
        answer: dict
        if action == START_TRAINING:
            answer = self._trigger(project, 0, action)
        elif action in ANNOTATION_EVENTS and (every := self._retrain_every(project)) > 0:
            answer = self._trigger(project, every, action)
        else:
            answer = {"status": "recorded"}
        self.services.projects.record_event(
            project,
            action,
            {**_summary(action, payload), "outcome": answer["status"], "job": answer.get("job"), "quality": quality},
        )
        return answer

    def _score(self, project: str, action: str, payload: dict) -> str | None:
        """Live quality is a by-product: a bug in it must not cost Label Studio its training trigger."""
        try:
            return LiveQuality(self.services).observe(project, action, payload)
        except redis.RedisError:
            raise
        except Exception:
            log.exception("webhook %s for project %s: live quality not updated", action, project)
            return "error"

    def _retrain_every(self, project: str) -> int:
        """The project's own threshold (its Extra params' ``retrain_every``), else ``RETRAIN_EVERY_N``."""
        try:
            return self.services.project_settings(project).retrain_every
        except ProfileGone:
            return self.services.settings.retrain_every_n  # the job itself will fail loudly and say why

    def _trigger(self, project: str, threshold: int, action: str) -> dict:
        decision = self.jobs.trigger(project, threshold=threshold, reason=action)
        answer: dict = {"status": decision.status}
        if decision.status is TriggerStatus.COUNTED:
            answer["annotations_since_last_run"] = int(decision.detail or 0)
            answer["retrain_every_n"] = threshold
        elif decision.job:
            answer["job"] = decision.job
        return answer
