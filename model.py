"""``PromptPolicyModel``: Label Studio's ML backend contract, mapped onto the runtime's :class:`Annotator`.

It adapts and decides nothing: which policy answers, the deadline, the priority, what goes to a bulk run and what
is counted are the annotator's (``optimizer/runtime/annotator.py``); webhooks go to ``optimizer.jobs.webhooks``,
which only touches Redis and queues RQ jobs. The version ``/setup`` and ``/predict`` report is the served policy's.
"""

from __future__ import annotations

from ls_protocol import InvalidInput, InvalidLabelConfig, LabelStudioMLBase
from optimizer.jobs.webhooks import WebhookHandler
from optimizer.labelstudio.labelconfig import LabelConfigError
from optimizer.runtime.annotator import Annotator, NoLabelConfig, ProjectRequest


class PromptPolicyModel(LabelStudioMLBase):
    def __init__(self, annotator: Annotator, webhooks: WebhookHandler, **kwargs) -> None:
        self.annotator = annotator
        self.webhooks = webhooks
        self.request: ProjectRequest | None = None
        super().__init__(**kwargs)

    def setup(self) -> None:
        try:
            self.request = self.annotator.request(self.project_id, self.label_config)
        except LabelConfigError as exc:
            raise InvalidLabelConfig(f"label config cannot be used: {exc}") from None

    def configure(self, extra_params: dict | None) -> None:
        self.request.configure(extra_params)  # ProjectSettingsError names the key; the app maps it to a 400

    @property
    def model_version(self) -> str:
        return self.request.version

    def predict(self, tasks: list[dict], context: dict | None = None, **kwargs) -> list[dict]:
        try:
            return self.request.predict(tasks, context)
        except NoLabelConfig as exc:
            raise InvalidInput(str(exc), exc.field) from None

    def fit(self, event: str, data: dict, **kwargs) -> dict:
        """Webhook errors are typed (``WebhookError``, ``WebhookUnavailable``); the app maps them to statuses."""
        return self.webhooks.handle(self.project_id, event, data)

    def versions(self) -> list[str]:
        return self.request.versions()

    def health(self) -> dict:
        return self.annotator.health()
