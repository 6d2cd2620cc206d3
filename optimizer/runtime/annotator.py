"""Label Studio's requests turned into answers: one object per request that knows its project, policy and settings.

``model.py`` maps the protocol onto this and nothing else, so a ``/predict`` walks one way: the protocol layer →
``model.py`` → :meth:`ProjectRequest.predict` → the shared predictor → Label Studio results. The decisions a
request needs live here, in one place:

- **which policy** answers (the project's live one, read from Redis once per request, or the judge's default for a
  reward-scoring config), and so which ``model_version`` both ``/setup`` and ``/predict`` report: the policy's,
  the label config's and the model's parts together (``versions.py``);
- **the deadline** (``PREDICT_DEADLINE``) and **the priority**: one task means an annotator is waiting on it;
- **what to offload**: tasks past ``PREDICT_SYNC_MAX`` and those the deadline cut off go to a bulk run that posts
  them, when a worker can post (Label Studio configured, numeric project id, task ids, Redis up);
- **accounting**: every task is counted in ``/metrics`` and every one without an answer is logged with its reason;
  the LLM calls are charged to the project, a project past its daily spend limit gets no prediction (``budget``),
  and what Label Studio will store is remembered per task, to score the task's annotation against (``live.py``).

The bulk queue is handed in (:class:`BulkOffload`): it lives in ``optimizer.jobs``, a layer above this one.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import Counter
from typing import Protocol

import redis

from optimizer.labelstudio.ids import numeric_id
from optimizer.labelstudio.labelconfig import LabelConfigError, Schema, parse_label_config
from optimizer.labelstudio.results import prompt_in_context
from optimizer.logconfig import public_url
from optimizer.project_settings import ProjectConfig, parse_choices
from optimizer.runtime import telemetry
from optimizer.runtime.live import LiveQuality
from optimizer.runtime.services import Services
from optimizer.runtime.spend import over_limit
from optimizer.runtime.versions import parts, served_version
from optimizer.serving.labelling import ls_predictions, task_texts
from optimizer.serving.llm import Priority
from optimizer.serving.payer import paying
from optimizer.serving.policy import Policy
from optimizer.serving.predictor import FailureReason, Prediction

DEFAULT_PROJECT = "default"
log = logging.getLogger("optimizer.runtime.annotator")


class BulkOffload(Protocol):
    """Where tasks a ``/predict`` cannot finish go: ``optimizer.jobs.queue.JobQueue`` in the service."""

    def enqueue_bulk(
        self, project: str, version: str, tasks: list[int] | None = None, *, reason: str = "api"
    ) -> str: ...


class NoLabelConfig(ValueError):
    """A prediction was asked for without the project's label config (the protocol answers 400 naming it)."""

    field = "label_config"


class Annotator:
    """The process's one annotator: the services, and the queue that finishes what a request cannot."""

    def __init__(self, services: Services, offload: BulkOffload | None = None) -> None:
        self.services = services
        self.offload = offload

    def request(self, project_id: str | None, label_config: str | None) -> ProjectRequest:
        """A request's view of its project. Raises ``LabelConfigError`` for a config that cannot be served."""
        return ProjectRequest(self, project_id, label_config)

    def health(self) -> dict:
        llm = self.services.labeller.config
        limits = self.services.settings.llm_limits.to_dict()  # the limits in force, and which follow the endpoint
        return {**self.services.store.health(), "llm_model": llm.model, "llm_base_url": public_url(llm.base_url),
                "llm_limits": limits}  # fmt: skip


class ProjectRequest:
    """One request for one project: the policy and settings are read once, so ``/predict`` reports what it used."""

    def __init__(self, annotator: Annotator, project_id: str | None, label_config: str | None) -> None:
        self.services = annotator.services
        self.offload = annotator.offload
        self.project_id = project_id
        self.label_config = label_config
        self.schema: Schema | None = parse_label_config(label_config) if label_config is not None else None
        self._project: str | None = None
        self._policy: Policy | None = None
        self._settings: ProjectConfig | None = None
        self._version: str | None = None
        if self.schema is not None:
            self._remember_project()

    @property
    def project(self) -> str:
        """The key the project's policy lives under; a bare numeric id (``/versions?project=3``) is resolved."""
        if self._project is None:
            project = self.project_id or DEFAULT_PROJECT
            if project.isdigit():
                with contextlib.suppress(redis.RedisError):
                    project = self.services.projects.resolve(project)
            self._project = project
        return self._project

    def _remember_project(self) -> None:
        """Alias and label config for training jobs and the policy API; best effort, never fails a request."""
        if not self.project_id or self.services.store.degraded:
            return
        try:
            self.services.projects.seen(self.project_id, self.label_config)
        except redis.RedisError as exc:
            log.warning("could not record project %s: %s", self.project_id, exc.__class__.__name__)

    def configure(self, extra_params: dict | None) -> None:
        """Validate the project's Extra params (``ProjectSettingsError`` names the bad key) and store them."""
        choices = parse_choices(extra_params, self.services.settings, self.schema)
        if not self.project_id:
            return
        try:
            self.services.projects.save_settings(self.project, choices.to_json() if choices else None)
        except redis.RedisError as exc:
            # Like the policy: Redis down keeps serving what was last stored; say so rather than fail the connect.
            log.warning("could not store settings of project %s: %s", self.project, exc.__class__.__name__)

    @property
    def settings(self) -> ProjectConfig:
        """The project's effective LLM settings, read once per request (``/predict`` and training agree)."""
        if self._settings is None:
            self._settings = self.services.project_settings(self.project)
        return self._settings

    @property
    def policy(self) -> Policy:
        if self._policy is None:
            # A reward-scoring config still on the generic default is served (and recorded) the judge's default.
            self._policy = self.services.served_policy(self.project, self.schema, record=bool(self.project_id))
        return self._policy

    @property
    def version(self) -> str:
        """The ``model_version`` Label Studio sees for this project now (the same from ``/setup`` and ``/predict``)."""
        if self._version is None:
            self._version = self._served(self.policy)
        return self._version

    def _served(self, policy: Policy) -> str:
        schema = self.schema or self._stored_schema()
        if schema is None:
            return policy.version  # nothing known of the config (``/versions`` of a project never set up)
        version = served_version(policy.version, schema, self.settings)
        if self.project_id and not self.services.store.degraded:
            try:
                self.services.projects.record_served_version(
                    self.project, version, parts(policy.version, schema, self.settings)
                )
            except redis.RedisError as exc:
                log.warning("could not record served version of %s: %s", self.project, exc.__class__.__name__)
        return version

    def _stored_schema(self) -> Schema | None:
        """The config ``/setup`` last stored, for the routes Label Studio calls without one (``/versions``)."""
        try:
            stored = self.services.projects.label_config(self.project)
            return parse_label_config(stored) if stored else None
        except (redis.RedisError, LabelConfigError):
            return None

    def versions(self) -> list[str]:
        """The project's versions as Label Studio sees them, newest first (``GET /versions?project=<id>``): each
        policy of its history with today's label config and model."""
        try:
            policies = self.services.history.versions(self.project)
        except redis.RedisError:
            return [self.version]
        schema = self.schema or self._stored_schema()
        if schema is None:
            return policies
        return [served_version(v, schema, self.settings) for v in policies]

    def predict(self, tasks: list[dict], context: dict | None = None) -> list[dict]:
        """One answer per task, in order: a prediction, or ``[]`` for "none" (never an empty result)."""
        if self.schema is None:
            raise NoLabelConfig('missing "label_config": the project\'s label config XML is needed to predict')
        schema, policy, settings = self.schema, self.policy, self.services.settings
        version = self.version
        typed = prompt_in_context(schema, context)
        if typed:
            # Interactive mode: the annotator's typed prompt is used at once, with the project's demos.
            policy = policy.with_instruction(typed)
            version = served_version(policy.version, schema, self.settings)
        texts = task_texts(schema, tasks)
        refused = over_limit(self.services.spend, self.project, self.settings.daily_spend_limit)
        offload = not typed and not refused and self._can_offload(tasks)
        now = len(texts) if not offload else min(len(texts), settings.predict_sync_max)
        deadline = time.monotonic() + settings.predict_deadline
        # One task means an annotator is waiting on it (a task opened, an interactive prompt): it goes first.
        priority = Priority.INTERACTIVE if typed or len(tasks) == 1 else Priority.BULK
        predictor = self.services.predictor_for(self.settings.labeller_config)  # the project's profile and knobs
        if refused:
            predictions = [Prediction.failed(FailureReason.BUDGET, refused) for _ in texts]
        else:
            with paying(self.project, self.settings.profile):
                predictions = predictor.predict_many(policy, schema, texts[:now], deadline=deadline, priority=priority)
            predictions += [Prediction.failed(FailureReason.QUEUED) for _ in texts[now:]]
        if offload:
            self._queue_unfinished(policy.version, tasks, predictions)
        self._account(policy.version if not typed else telemetry.INTERACTIVE, predictions)
        answers = ls_predictions(schema, policy, predictions, tasks, version=version)
        if not context:  # Label Studio stores these (an interactive answer is only shown): score annotations on them
            self._remember(schema, tasks, answers)
        if typed:
            # Interactive answers are shown, never stored; Label Studio's editor expects one object per task.
            return [a or {"result": [], "score": 0.0, "model_version": version} for a in answers]
        # An empty list is "no prediction for this task": Label Studio keeps the one-per-task count, stores nothing
        # and asks for the task again on the next Retrieve Predictions (docs/tags.md, "Tasks without an answer").
        return [a if a is not None else [] for a in answers]

    def _remember(self, schema: Schema, tasks: list[dict], answers: list[dict | None]) -> None:
        if self.services.store.degraded or not self.project_id:
            return
        try:
            LiveQuality(self.services).remember(self.project, schema, tasks, answers)
        except redis.RedisError as exc:
            log.warning("could not record %d answers for live quality: %s", len(tasks), exc.__class__.__name__)

    def _can_offload(self, tasks: list[dict]) -> bool:
        """Unfinished tasks can go to a bulk run only if a worker can post to Label Studio and they have ids."""
        settings = self.services.settings
        return (
            self.offload is not None
            and bool(settings.label_studio_url and settings.label_studio_api_key.get_secret_value())
            and numeric_id(self.project) is not None
            and not self.services.store.degraded
            and all(isinstance(t.get("id"), int) for t in tasks)
        )

    def _queue_unfinished(self, version: str, tasks: list[dict], predictions: list[Prediction]) -> None:
        """Hand the tasks the deadline cut off, and those past PREDICT_SYNC_MAX, to a bulk run that posts them."""
        later = (FailureReason.DEADLINE, FailureReason.QUEUED)
        ids = [t["id"] for t, p in zip(tasks, predictions, strict=True) if p.error and p.error.reason in later]
        if not ids or self.offload is None:
            return
        try:
            run = self.offload.enqueue_bulk(self.project, version, ids, reason="predict")
        except redis.RedisError as exc:
            log.error("could not queue %d unfinished tasks for the bulk job: %s", len(ids), exc.__class__.__name__)
            return
        log.info("queued %d tasks this /predict did not finish as bulk run %s", len(ids), run,
                 extra={"project": self.project, "job": run, "tasks": len(ids)})  # fmt: skip

    def _account(self, version: str, predictions: list[Prediction]) -> None:
        """Count every task in /metrics and log every one that got no answer, by reason: none is silent."""
        errors = [p.error for p in predictions]
        salvaged = sum(1 for p in predictions if p.salvaged and not p.error)
        sources = [p.source for p in predictions if not p.error]
        telemetry.record_predictions(self.project, version, errors, salvaged, sources)
        failed = Counter(e.reason.value for e in errors if e)
        if failed:
            first = next(e for e in errors if e)
            log.warning(
                "%d of %d tasks got no prediction (%s); first: %s",
                sum(failed.values()),
                len(errors),
                ", ".join(f"{reason} {n}" for reason, n in sorted(failed.items())),
                first,
                extra={"project": self.project, "tasks": len(errors), "failed": dict(failed)},
            )
        if salvaged:
            log.warning("%d answers were cut off at the token cap; their complete labels were kept", salvaged)
