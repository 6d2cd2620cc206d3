"""``PromptPolicyModel``: the glue between Label Studio's protocol and the prompt-policy engine in ``optimizer/``.

Per request it parses the label config (cached by content), reads the project's current policy from Redis once,
renders each task, runs the shared predictor and maps the answers back to Label Studio results. The version it
reports from ``/setup`` and ``/predict`` is the policy's content hash, so it changes exactly when the policy does.
"""

from __future__ import annotations

import logging
import time

from ls_protocol import InvalidInput, LabelStudioMLBase
from optimizer import telemetry
from optimizer.labelconfig import LabelConfigError, Schema, parse_label_config
from optimizer.lsformat import to_results, typed_prompt
from optimizer.policy import Policy
from optimizer.render import MissingInput, render_input
from optimizer.services import Services

DEFAULT_PROJECT = "default"
log = logging.getLogger(__name__)


class PromptPolicyModel(LabelStudioMLBase):
    def __init__(self, services: Services, **kwargs) -> None:
        self.services = services
        self.schema: Schema | None = None
        self._policy: Policy | None = None
        super().__init__(**kwargs)

    @property
    def project(self) -> str:
        return self.project_id or DEFAULT_PROJECT

    def setup(self) -> None:
        if self.label_config is None:
            return
        try:
            self.schema = parse_label_config(self.label_config)
        except LabelConfigError as exc:
            raise InvalidInput(f"label config cannot be used: {exc}") from None

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
        typed = typed_prompt(self.schema, context)
        if typed:
            # Interactive mode: the annotator's typed prompt is used at once, with the project's demos.
            policy = policy.with_instruction(typed)
        texts: list[str | None] = []
        for task in tasks:
            try:
                texts.append(render_input(self.schema, task["data"]))
            except MissingInput:
                texts.append(None)
        deadline = time.monotonic() + self.services.settings.predict_deadline
        predictions = self.services.predictor.predict_many(policy, self.schema, texts, deadline=deadline)
        self._account(policy.version if not typed else telemetry.INTERACTIVE, [p.error for p in predictions])
        return [
            {
                "result": to_results(self.schema, p.choices, p.texts, p.control_scores, prompt=policy.instruction),
                "score": p.score,
                "model_version": policy.version,
            }
            for p in predictions
        ]

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
        return {"status": "acknowledged"}

    def health(self) -> dict:
        llm = self.services.labeller.config
        return {**self.services.store.health(), "llm_model": llm.model, "llm_base_url": llm.base_url}
