"""The model contract Label Studio's ML backends follow, as plain methods to override.

A model instance is built per request from ``(project_id, label_config)`` and must not keep state between requests
in process memory: under several gunicorn workers each request may land in a different process. State that must
outlive a request belongs in shared storage (this project keeps it in Redis).
"""

from __future__ import annotations

from typing import Any


class LabelStudioMLBase:
    def __init__(self, project_id: str | None = None, label_config: str | None = None, **extra: Any) -> None:
        self.project_id = project_id
        self.label_config = label_config
        self.extra = extra
        self.setup()

    def setup(self) -> None:
        """Validate and prepare for this project; raise ``InvalidInput`` for a config that cannot be served."""

    def configure(self, extra_params: dict | None) -> None:
        """Take the project's *Extra params* (``/setup`` only: Label Studio sends them nowhere else; None when the
        field is empty). Raise ``InvalidInput`` for a value that cannot be used; Label Studio shows the message."""

    @property
    def model_version(self) -> str:
        """The version Label Studio records; it must change exactly when predictions would change."""
        return "0"

    def predict(self, tasks: list[dict], context: dict | None = None, **kwargs: Any) -> list[dict]:
        """One ``{"result": [...], "score": float, "model_version": str}`` per task, in task order.

        An empty list in a task's place means "no prediction for this task": Label Studio 1.23.2 stores nothing for
        it and asks for it again on the next Retrieve Predictions.
        """
        raise NotImplementedError

    def fit(self, event: str, data: dict, **kwargs: Any) -> dict | None:
        """React to a webhook event (``START_TRAINING``, ``ANNOTATION_CREATED``, ...). Must return quickly."""
        return None

    def versions(self) -> list[str]:
        return [self.model_version]

    def health(self) -> dict:
        """Extra fields for ``/health``; must answer well within Label Studio's 1 s timeout."""
        return {}
