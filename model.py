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

import redis

from ls_protocol import InvalidInput, LabelStudioMLBase
from optimizer.labelstudio.labelconfig import LabelConfigError, Schema, parse_label_config
from optimizer.labelstudio.results import prompt_in_context
from optimizer.logconfig import public_url
from optimizer.runtime import telemetry
from optimizer.runtime.services import Services
from optimizer.serving.labelling import ls_predictions, task_texts
from optimizer.serving.policy import Policy
from optimizer.training.webhooks import WebhookError, WebhookHandler, WebhookUnavailable

DEFAULT_PROJECT = "default"
log = logging.getLogger(__name__)


class PromptPolicyModel(LabelStudioMLBase):
    def __init__(self, services: Services, **kwargs) -> None:
        self.services = services
        self.schema: Schema | None = None
        self._policy: Policy | None = None
        self._project: str | None = None
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
            raise InvalidInput(f"label config cannot be used: {exc}") from None
        self._remember_project()

    def _remember_project(self) -> None:
        """Alias and label config for training jobs and the policy API; best effort, never fails a request."""
        if not self.project_id or self.services.store.degraded:
            return
        try:
            self.services.projects.seen(self.project_id, self.label_config)
        except redis.RedisError as exc:
            log.warning("could not record project %s: %s", self.project_id, exc.__class__.__name__)

    @property
    def policy(self) -> Policy:
        """The project's policy, read once per request so ``/predict`` reports the version it used."""
        if self._policy is None:
            self._policy = self.services.store.current(self.project)
        return self._policy

    @property
    def model_version(self) -> str:
        return self.policy.version

    def predict(self, tasks: list[dict], context: dict | None = None, **kwargs) -> list[dict]:
        if self.schema is None:
            raise InvalidInput('missing "label_config": the project\'s label config XML is needed to predict')
        policy = self.policy
        typed = prompt_in_context(self.schema, context)
        if typed:
            # Interactive mode: the annotator's typed prompt is used at once, with the project's demos.
            policy = policy.with_instruction(typed)
        texts = task_texts(self.schema, tasks)
        deadline = time.monotonic() + self.services.settings.predict_deadline
        predictions = self.services.predictor.predict_many(policy, self.schema, texts, deadline=deadline)
        self._account(policy.version if not typed else telemetry.INTERACTIVE, [p.error for p in predictions])
        return ls_predictions(self.schema, policy, predictions, tasks)

    def _account(self, version: str, errors: list[str | None]) -> None:
        telemetry.record_predictions(self.project, version, errors)
        failed = [e for e in errors if e]
        if failed:
            log.warning(
                "%d of %d tasks got empty predictions; first reason: %s",
                len(failed),
                len(errors),
                failed[0],
                extra={"project": self.project, "tasks": len(errors), "failed": len(failed)},
            )

    def fit(self, event: str, data: dict, **kwargs) -> dict:
        try:
            return WebhookHandler(self.services).handle(self.project_id, event, data)
        except WebhookError as exc:
            raise InvalidInput(str(exc)) from None
        except WebhookUnavailable as exc:
            raise InvalidInput(str(exc), status=503) from None

    def versions(self) -> list[str]:
        """The project's policy versions, newest first (``GET /versions?project=<id>``)."""
        try:
            return self.services.history.versions(self.project)
        except redis.RedisError:
            return [self.model_version]

    def health(self) -> dict:
        llm = self.services.labeller.config
        return {**self.services.store.health(), "llm_model": llm.model, "llm_base_url": public_url(llm.base_url)}
