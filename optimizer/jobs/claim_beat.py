"""The heartbeat that keeps a chunk's claims while its LLM calls run.

A claim expires after ``BULK_CLAIM_TTL`` so that a worker killed mid-chunk frees its tasks for the retry; a chunk
that is alive but slow (a long text on the embedded model) must not lose them to that expiry, so a thread renews
them while the chunk predicts.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from optimizer.runtime.services import Services

log = logging.getLogger("optimizer.jobs.bulk")


class ClaimBeat(threading.Thread):
    """Renews this chunk's claims every third of their TTL while it predicts, so a slow LLM never loses them."""

    def __init__(self, services: Services, project: str, version: str, holder: str, tasks: Sequence[int]) -> None:
        super().__init__(name=f"claims-{holder}", daemon=True)
        self.args = (project, version, list(tasks), holder)
        self.ledger, self.ttl = services.bulk, services.settings.bulk_claim_ttl
        self._stop_event = threading.Event()

    def run(self) -> None:
        project, version, tasks, holder = self.args
        while not self._stop_event.wait(self.ttl / 3):
            try:
                self.ledger.renew(project, version, tasks, holder, self.ttl)
            except Exception:  # a Redis blip: the claim outlives two missed beats
                log.warning("chunk %s: claim heartbeat failed", holder, exc_info=True)

    def stop(self) -> None:
        self._stop_event.set()
