"""``PromptPolicyModel``: the glue between Label Studio's protocol and the prompt-policy engine in ``optimizer/``.

Per request it parses the label config (cached by content), reads the project's current policy from Redis once,
renders each task, runs the shared predictor and maps the answers back to Label Studio results. The version it
reports from ``/setup`` and ``/predict`` is the policy's content hash, so it changes exactly when the policy does.
Webhooks go to ``optimizer.training.webhooks`` (which only touches Redis and queues RQ jobs).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import Counter

import redis

from ls_protocol import InvalidInput, InvalidLabelConfig, LabelStudioMLBase
from optimizer.labelstudio.labelconfig import LabelConfigError, Schema, parse_label_config
from optimizer.labelstudio.results import prompt_in_context
from optimizer.logconfig import public_url
from optimizer.project_settings import Effective, ProjectSettingsError, parse_choices
from optimizer.runtime import telemetry
from optimizer.runtime.services import Services
from optimizer.serving.labelling import ls_predictions, task_texts
from optimizer.serving.llm import Priority
from optimizer.serving.policy import Policy
from optimizer.serving.predictor import FailureReason, Prediction
from optimizer.state.projects import numeric_id
from optimizer.training.webhooks import WebhookHandler

DEFAULT_PROJECT = "default"
log = logging.getLogger(__name__)


class PromptPolicyModel(LabelStudioMLBase):
    def __init__(self, services: Services, **kwargs) -> None:
        self.services = services
        self.schema: Schema | None = None
        self._policy: Policy | None = None
        self._project: str | None = None
        self._settings: Effective | None = None
        super().__init__(**kwargs)

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

    def setup(self) -> None:
        if self.label_config is None:
            return
        try:
            self.schema = parse_label_config(self.label_config)
        except LabelConfigError as exc:
            raise InvalidLabelConfig(f"label config cannot be used: {exc}") from None
        self._remember_project()

    def _remember_project(self) -> None:
        """Alias and label config for training jobs and the policy API; best effort, never fails a request."""
        if not self.project_id or self.services.store.degraded:
            return
        try:
            self.services.projects.seen(self.project_id, self.label_config)
        except redis.RedisError as exc:
            log.warning("could not record project %s: %s", self.project_id, exc.__class__.__name__)

    def configure(self, extra_params: dict | None) -> None:
        """Validate the project's Extra params against the server's profiles and store them for every path."""
        try:
            choices = parse_choices(extra_params, self.services.settings, self.schema)
        except ProjectSettingsError as exc:
            raise InvalidInput(exc.message, exc.field) from None
        if not self.project_id:
            return
        try:
            self.services.projects.save_settings(self.project, choices.to_json() if choices else None)
        except redis.RedisError as exc:
            # Like the policy: Redis down keeps serving what was last stored; say so rather than fail the connect.
            log.warning("could not store settings of project %s: %s", self.project, exc.__class__.__name__)

    @property
    def settings(self) -> Effective:
        """The project's effective LLM settings, read once per request (``/predict`` and training agree)."""
        if self._settings is None:
            self._settings = self.services.project_settings(self.project)
        return self._settings

    @property
    def policy(self) -> Policy:
        """The project's policy, read once per request so ``/predict`` reports the version it used."""
        if self._policy is None:
            # A reward-scoring config still on the generic default is served (and recorded) the judge's default.
            self._policy = self.services.served_policy(self.project, self.schema, record=bool(self.project_id))
        return self._policy

    @property
    def model_version(self) -> str:
        return self.policy.version

    def predict(self, tasks: list[dict], context: dict | None = None, **kwargs) -> list[dict]:
        if self.schema is None:
            raise InvalidInput(
                'missing "label_config": the project\'s label config XML is needed to predict', "label_config"
            )
        policy = self.policy
        typed = prompt_in_context(self.schema, context)
        if typed:
            # Interactive mode: the annotator's typed prompt is used at once, with the project's demos.
            policy = policy.with_instruction(typed)
        texts = task_texts(self.schema, tasks)
        settings = self.services.settings
        offload = not typed and self._can_offload(tasks)
        now = len(texts) if not offload else min(len(texts), settings.predict_sync_max)
        deadline = time.monotonic() + settings.predict_deadline
        # One task means an annotator is waiting on it (a task opened, an interactive prompt): it goes first.
        priority = Priority.INTERACTIVE if typed or len(tasks) == 1 else Priority.BULK
        predictor = self.services.predictor_for(self.settings.labeller)  # the project's profile and knobs
        predictions = predictor.predict_many(policy, self.schema, texts[:now], deadline=deadline, priority=priority)
        predictions += [Prediction.failed(FailureReason.QUEUED) for _ in texts[now:]]
        if offload:
            self._queue_unfinished(policy.version, tasks, predictions)
        self._account(policy.version if not typed else telemetry.INTERACTIVE, predictions)
        answers = ls_predictions(self.schema, policy, predictions, tasks)
        if typed:
            # Interactive answers are shown, never stored; Label Studio's editor expects one object per task.
            return [a or {"result": [], "score": 0.0, "model_version": policy.version} for a in answers]
        # An empty list is "no prediction for this task": Label Studio keeps the one-per-task count, stores nothing
        # and asks for the task again on the next Retrieve Predictions (README, "Tasks without an answer").
        return [a if a is not None else [] for a in answers]

    def _can_offload(self, tasks: list[dict]) -> bool:
        """Unfinished tasks can go to the bulk job only if a worker can post to Label Studio and they have ids."""
        settings = self.services.settings
        return (
            bool(settings.label_studio_url and settings.label_studio_api_key.get_secret_value())
            and numeric_id(self.project) is not None
            and not self.services.store.degraded
            and all(isinstance(t.get("id"), int) for t in tasks)
        )

    def _queue_unfinished(self, version: str, tasks: list[dict], predictions: list[Prediction]) -> None:
        """Hand the tasks the deadline cut off, and those past PREDICT_SYNC_MAX, to a bulk run that posts them."""
        later = (FailureReason.DEADLINE, FailureReason.QUEUED)
        ids = [t["id"] for t, p in zip(tasks, predictions, strict=True) if p.error and p.error.reason in later]
        if not ids:
            return
        try:
            run = self.services.jobs.enqueue_bulk(self.project, version, ids, reason="predict")
        except redis.RedisError as exc:
            log.error("could not queue %d unfinished tasks for the bulk job: %s", len(ids), exc.__class__.__name__)
            return
        log.info("queued %d tasks this /predict did not finish as bulk run %s", len(ids), run,
                 extra={"project": self.project, "job": run, "tasks": len(ids)})  # fmt: skip

    def _account(self, version: str, predictions: list[Prediction]) -> None:
        """Count every task in /metrics and log every one that got no answer, by reason: none is silent."""
        errors = [p.error for p in predictions]
        salvaged = sum(1 for p in predictions if p.salvaged and not p.error)
        telemetry.record_predictions(self.project, version, errors, salvaged)
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

    def fit(self, event: str, data: dict, **kwargs) -> dict:
        """Webhook errors are typed (``WebhookError``, ``WebhookUnavailable``); ``_wsgi`` maps them to statuses."""
        return WebhookHandler(self.services).handle(self.project_id, event, data)

    def versions(self) -> list[str]:
        """The project's policy versions, newest first (``GET /versions?project=<id>``)."""
        try:
            return self.services.history.versions(self.project)
        except redis.RedisError:
            return [self.model_version]

    def health(self) -> dict:
        llm = self.services.labeller.config
        return {**self.services.store.health(), "llm_model": llm.model, "llm_base_url": public_url(llm.base_url)}
