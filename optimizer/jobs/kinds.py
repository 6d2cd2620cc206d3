"""The kinds of job the backend runs in RQ, in one enum: what a job's ``meta["kind"]`` holds.

The function each kind runs is in :data:`optimizer.jobs.functions.FUNCTIONS`, the one table from kind to job
function (``tests/test_job_kinds.py`` imports each one the way RQ will). Nothing outside this package spells a kind or a
job function as a string.
"""

from __future__ import annotations

from enum import StrEnum


class Stored(StrEnum):
    """An enum whose values are stored in Redis by jobs, and read back by code that may be newer or older."""

    @classmethod
    def of(cls, value):
        """The member a stored value names; None for an unknown one (a job this backend did not queue, say)."""
        try:
            return cls(value)
        except ValueError:
            return None


class JobKind(Stored):
    TRAIN = "train"  # one training run of one project (coalesced triggers)
    BULK = "bulk"  # a bulk pre-annotation run's plan: lists the tasks and queues the chunks
    BULK_CHUNK = "bulk_chunk"  # one chunk of a bulk run: predict and post


class QueueRole(Stored):
    """The two RQ queues: training runs, and bulk pre-annotation (plans, chunks, the re-predict after a promotion).

    Apart, so a 10,000-task run's 300 chunks never sit in front of the next ``START_TRAINING``, and compose can scale
    bulk workers without training ones. A worker listening to both takes training first (``WORKER_QUEUES``)."""

    TRAINING = "train"
    BULK = "bulk"


QUEUE_OF = {JobKind.TRAIN: QueueRole.TRAINING, JobKind.BULK: QueueRole.BULK, JobKind.BULK_CHUNK: QueueRole.BULK}
