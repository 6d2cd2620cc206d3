"""Why a job stops: one error type whose message is the job's failure reason, and the services a job cannot run
without, turned into that error when they are missing.

Training runs and bulk runs share these: both read Label Studio with the server's key and predict with the
project's own LLM settings, and both must fail with a sentence a person can act on, never a traceback.
"""

from __future__ import annotations

from optimizer.labelstudio.client import LabelStudioClient, LabelStudioError
from optimizer.project_settings import ProfileGone, ProjectConfig
from optimizer.runtime.services import Services


class JobError(RuntimeError):
    """A run that cannot proceed; the message is the job's failure reason (``job.meta["error"]``)."""


def label_studio(services: Services) -> LabelStudioClient:
    """The process's Label Studio client; a missing URL or key fails the job with its reason."""
    try:
        return services.label_studio
    except LabelStudioError as exc:
        raise JobError(str(exc)) from None


def project_config(services: Services, project: str) -> ProjectConfig:
    """The same effective settings ``/predict`` uses: the project's profile, knobs, budget and verifiers."""
    try:
        return services.project_settings(project)
    except ProfileGone as exc:
        raise JobError(str(exc)) from None


class CancelError(Exception):
    """A cancel request that cannot be served; the message names the job (and its status); ``field`` is ``job``."""

    field = "job"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UnknownJob(CancelError):
    """No such job (never queued, or its record expired): 404."""


class JobEnded(CancelError):
    """The job already ended, or is committing its result (a promotion): nothing left to stop, 409."""
