"""The worker's view of Label Studio, through label-studio-sdk: project config, tasks with annotations, predictions.

Only the worker talks to Label Studio (webhooks carry no annotations for ``START_TRAINING``). The SDK accepts both
kinds of key as ``api_key``: a legacy token is sent as ``Authorization: Token``; a personal access token (a JWT
refresh token) is exchanged for short-lived access tokens at ``/api/token/refresh/`` and sent as ``Bearer``. An
expired personal token fails when the client is built; that is reported as a readable error like any other.

Every failure becomes :class:`LabelStudioError` with a message that names the URL, the status and what to check,
never the key.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

log = logging.getLogger("optimizer.labelstudio.client")


class LabelStudioError(RuntimeError):
    """Label Studio could not be reached or refused a request; the message is meant for the job's reason."""


class LabelStudioNotConfigured(LabelStudioError):
    """``LABEL_STUDIO_URL`` or ``LABEL_STUDIO_API_KEY`` is not set on this server."""


class LabelStudioNotFound(LabelStudioError):
    """Label Studio answered 404: the project (or task) does not exist there."""

    field = "project"


class LabelStudioUnavailable(LabelStudioError):
    """A failure that trying again later may fix: a 5xx or 429 answer, a timeout, a refused or cut connection.

    Bulk chunks are retried on these (RQ's ``Retry``, with backoff); a 401, 403 or 404 is never retried."""


@dataclass(frozen=True)
class TaskPage:
    """One page of a task listing: the ids on it, and how many tasks the whole (filtered) listing holds."""

    ids: list[int]
    total: int


# Data Manager filters (Label Studio 1.23.2, checked against the real server by tests/test_bulk_labelstudio.py).
# ``not_contains`` on predictions' model versions is a substring test (SQL LIKE), so a task is left out when one of
# its predictions' versions *contains* ours; versions are distinct hashes, and the chunk re-reads through the same
# filter, so a task is never predicted twice.
def _lacking(version: str) -> dict:
    return {"filter": "filter:tasks:predictions_model_versions", "operator": "not_contains", "type": "List",
            "value": [version]}  # fmt: skip


def _number_is(field: str, operator: str, value: int) -> dict:
    return {"filter": f"filter:tasks:{field}", "operator": operator, "type": "Number", "value": value}


UNANNOTATED = (_number_is("total_annotations", "equal", 0), _number_is("cancelled_annotations", "equal", 0))


def _plain(item: Any) -> dict:
    """SDK models → plain JSON-like dicts (the same shape as a Label Studio JSON export)."""
    if isinstance(item, dict):
        return item
    if hasattr(item, "model_dump"):
        return item.model_dump(mode="json")
    return item.dict()


class LabelStudioClient:
    def __init__(self, url: str, api_key: str, timeout: float = 30.0, page_size: int = 100) -> None:
        if not url:
            raise LabelStudioNotConfigured(
                "LABEL_STUDIO_URL is not set: the worker needs it to read the project's annotations"
            )
        if not api_key:
            raise LabelStudioNotConfigured(
                "LABEL_STUDIO_API_KEY is not set: use a legacy token or a personal access token"
            )
        self.url = url.rstrip("/")
        self.page_size = page_size
        from label_studio_sdk.client import LabelStudio

        try:
            self.sdk = LabelStudio(base_url=self.url, api_key=api_key, timeout=timeout)
        except Exception as exc:  # an expired or malformed personal access token fails here
            raise LabelStudioError(f"cannot use LABEL_STUDIO_API_KEY: {_describe(exc)}") from None

    def _call(self, what: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except LabelStudioError:
            raise
        except Exception as exc:
            raise _kind(exc)(f"Label Studio at {self.url}: {what} failed: {_describe(exc)}") from None

    def label_config(self, project: int) -> str:
        found = self._call(f"reading project {project}", self.sdk.projects.get, id=project)
        config = getattr(found, "label_config", None)
        if not config:
            raise LabelStudioError(f"Label Studio project {project} has no label config")
        return config

    def tasks(self, project: int, ids: Sequence[int] | None = None) -> Iterator[dict]:
        """Every task of the project (or only ``ids``) with its annotations and predictions, page by page.

        ``ids`` go in the Data Manager's ``query`` as ``selectedItems``: Label Studio 1.23.2 ignores the SDK's own
        ``selected_items`` argument on this route and would list the whole project.
        """
        query = json.dumps({"selectedItems": {"all": False, "included": list(ids)}}) if ids is not None else None

        def pages():
            return self.sdk.tasks.list(project=project, fields="all", page_size=self.page_size, query=query)

        pager = self._call(f"listing tasks of project {project}", pages)
        try:
            for item in pager:
                yield _plain(item)
        except Exception as exc:
            raise _kind(exc)(
                f"Label Studio at {self.url}: listing tasks of project {project} failed: {_describe(exc)}"
            ) from None

    def _page(self, what: str, project: int, query: dict, include: str, size: int) -> tuple[list[dict], int]:
        """The first page of a listing (``include``: the task fields to send), and the listing's total."""
        pager = self._call(
            what,
            self.sdk.tasks.list,
            project=project,
            fields="task_only",  # the SDK's default is "all": every annotation, draft and prediction of every task
            include=include,
            page=1,
            page_size=size,
            query=json.dumps(query),
        )
        response = pager.response
        return [_plain(item) for item in pager.items or []], int(getattr(response, "total", 0) or 0)

    def pending(
        self, project: int, version: str, *, skip_annotated: bool = False, after: int = 0
    ) -> Iterator[TaskPage]:
        """Ids above ``after`` of the project's tasks lacking a prediction of ``version``, page by page, lowest first.

        Each page asks for ids above the last one seen (not for page N): predictions posted meanwhile take tasks
        out of the listing, and a page number would then skip as many tasks as were posted. Only ids come back.
        """
        while True:
            items = [_lacking(version), _number_is("id", "greater", after), *(UNANNOTATED if skip_annotated else ())]
            query = {"filters": {"conjunction": "and", "items": items}, "ordering": ["tasks:id"]}
            tasks, total = self._page(f"listing tasks of project {project}", project, query, "id", self.page_size)
            ids = [int(t["id"]) for t in tasks]
            if not ids:
                return
            yield TaskPage(ids, total)
            after = max(ids)

    def count(self, project: int) -> int:
        """How many tasks the project holds (one id comes back)."""
        return self._page(f"counting tasks of project {project}", project, {}, "id", 1)[1]

    def lacking(
        self, project: int, version: str, ids: Sequence[int], *, include: str = "id,data", skip_annotated=False
    ) -> list[dict]:
        """The tasks among ``ids`` that still lack a prediction of ``version``, with only the fields in ``include``
        (a chunk reads ``id,data``: never the annotations, drafts or other versions' predictions)."""
        out: list[dict] = []
        for start in range(0, len(ids), self.page_size):
            group = list(ids[start : start + self.page_size])
            items = [_lacking(version), *(UNANNOTATED if skip_annotated else ())]
            query = {"filters": {"conjunction": "and", "items": items},
                     "selectedItems": {"all": False, "included": group}}  # fmt: skip
            out += self._page(f"reading tasks of project {project}", project, query, include, len(group))[0]
        return out

    def existing(self, project: int, ids: Sequence[int]) -> set[int]:
        """Which of ``ids`` exist in the project."""
        found: set[int] = set()
        for start in range(0, len(ids), self.page_size):
            group = list(ids[start : start + self.page_size])
            query = {"selectedItems": {"all": False, "included": group}}
            tasks = self._page(f"reading tasks of project {project}", project, query, "id", len(group))[0]
            found |= {int(t["id"]) for t in tasks}
        return found

    def annotated_tasks(self, project: int) -> list[dict]:
        return [t for t in self.tasks(project) if t.get("annotations")]

    def import_predictions(self, project: int, predictions: list[dict]) -> int:
        """Post predictions (``{task, result, score, model_version}``) in one request; returns how many LS took.

        Sent exactly once: the SDK retries a 5xx or a dropped connection by posting again, and an import is not
        idempotent. When the error came after Label Studio committed (a proxy's 502, a connection cut before the
        answer) that retry stores every prediction twice. The caller re-reads what Label Studio holds instead
        (:func:`optimizer.jobs.posting.post_once`).
        """
        from label_studio_sdk import PredictionRequest

        request = [PredictionRequest(**p) for p in predictions]
        answer = self._call(
            f"importing {len(request)} predictions into project {project}",
            self.sdk.projects.import_predictions,
            id=project,
            request=request,
            request_options={"max_retries": 0},
        )
        created = getattr(answer, "created", None)
        return int(created) if created is not None else len(request)


def _kind(exc: Exception) -> type[LabelStudioError]:
    """Which error a failed call is: not found, worth trying again later, or neither."""
    status = getattr(exc, "status_code", None)
    if status == 404:
        return LabelStudioNotFound
    if status is not None:
        return LabelStudioUnavailable if status >= 500 or status == 429 else LabelStudioError
    name = exc.__class__.__name__
    if isinstance(exc, httpx.TransportError) or "Connect" in name or "Timeout" in name:
        return LabelStudioUnavailable
    return LabelStudioError


def _describe(exc: Exception) -> str:
    status = getattr(exc, "status_code", None)
    if status is not None:
        body = getattr(exc, "body", None)
        detail = body.get("detail") if isinstance(body, dict) else body
        hint = {401: " (check LABEL_STUDIO_API_KEY)", 403: " (the key's user lacks access)", 404: " (wrong id?)"}
        return f"HTTP {status}{hint.get(status, '')}: {str(detail)[:200]}"
    name = exc.__class__.__name__
    if isinstance(exc, httpx.TransportError) or "Connect" in name or "Timeout" in name:  # refused, reset, cut
        return f"{name} (is LABEL_STUDIO_URL right and Label Studio running?)"
    return f"{name}: {str(exc)[:200]}"
