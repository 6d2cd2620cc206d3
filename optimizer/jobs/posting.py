"""Posting a chunk's predictions so that Label Studio holds each exactly once, whatever fails on the way.

Why a module of its own: label-studio-sdk retries an import on a 5xx or a cut connection, and an import Label
Studio had already committed was then posted twice (every task of the fault test held 2 predictions). The client
therefore sends each import once (:meth:`optimizer.labelstudio.client.LabelStudioClient.import_predictions`), and
the retry lives here, where it can first read the tasks back and re-send only what is still missing.
"""

from __future__ import annotations

import logging
import time

from optimizer.labelstudio.client import LabelStudioClient, LabelStudioError

log = logging.getLogger("optimizer.jobs.bulk")

POST_ATTEMPTS = 3
POST_PAUSE = 0.5  # seconds before the first retry, doubled each time


def post_once(
    ls: LabelStudioClient, number: int, version: str, payload: list[dict], *, attempts: int = POST_ATTEMPTS
) -> tuple[list[int], int]:
    """Post ``payload`` so that each task ends up with one prediction of ``version``, whatever fails on the way.

    An import that errors may still have been committed, so a retry first reads the tasks back and sends only those
    still lacking the version. Returns the task ids Label Studio now holds from this payload and the retries it
    took; raises the last :class:`LabelStudioError` when Label Studio stays unavailable (the chunk then releases
    its claims and asks RQ for another attempt later, which reads again before it posts).
    """
    pending = {int(p["task"]): p for p in payload}
    held: list[int] = []
    error: LabelStudioError | None = None
    for attempt in range(attempts):
        if attempt:
            time.sleep(POST_PAUSE * 2 ** (attempt - 1))
            try:
                lacking = {int(t["id"]) for t in ls.lacking(number, version, list(pending), include="id")}
            except LabelStudioError as exc:
                error = exc
                continue
            landed = [task for task in pending if task not in lacking]
            held += landed
            for task in landed:
                pending.pop(task)
            if not pending:
                return held, attempt
            log.warning("re-posting %d of %d predictions after: %s", len(pending), len(payload), error)
        try:
            ls.import_predictions(number, list(pending.values()))
        except LabelStudioError as exc:
            error = exc
            continue
        return held + list(pending), attempt
    assert error is not None
    raise type(error)(f"{error} (while posting {len(payload)} predictions, {attempts} attempts)")
