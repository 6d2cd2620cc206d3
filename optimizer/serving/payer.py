"""Who an LLM call is charged to: the project (and its profile) a piece of work is done for.

LLM clients are shared by every project on the same settings, so the client cannot know whose call it sends. The
caller can: ``/predict``, a bulk chunk and a training run each wrap their work in :func:`paying`, and the spend
meter (``optimizer.runtime.spend``) reads :func:`current` when a call is answered. A context variable, not an
argument threaded through the predictor, the optimiser and the proposer: the predictor's worker threads run each
task in a copy of the submitting context, so the payer follows the work onto them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class Payer:
    project: str
    profile: str


_payer: ContextVar[Payer | None] = ContextVar("llm_payer", default=None)


@contextmanager
def paying(project: str, profile: str) -> Iterator[Payer]:
    payer = Payer(project, profile)
    token = _payer.set(payer)
    try:
        yield payer
    finally:
        _payer.reset(token)


def current() -> Payer | None:
    """The payer of calls made here, or None (a CLI run on a gold file belongs to no project)."""
    return _payer.get()
