"""What goes wrong when calling a language model, by meaning rather than by SDK exception.

Callers and the client's retry loop must tell a transient fault (timeout, connection, 429, 5xx: worth retrying)
from a permanent one (a refused request, bad credentials: never retried), and a per-task failure (``LLMError``:
one empty prediction) from an endpoint that cannot serve anything (``LLMUnavailable``: stop the run). ``classify``
maps the ``openai`` SDK's exceptions onto these; no message it builds includes request headers or keys.
"""

from __future__ import annotations

import email.utils
import math
import time
from urllib.parse import urlsplit, urlunsplit

import openai


class LLMError(Exception):
    """Base class. ``retryable`` says whether trying the same request again could succeed."""

    retryable = False


class LLMTimeout(LLMError):
    retryable = True


class LLMConnectionError(LLMError):
    retryable = True


class LLMRateLimited(LLMError):
    retryable = True

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class LLMServerError(LLMError):
    retryable = True

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class LLMRequestError(LLMError):
    """The server refused the request itself (4xx): retrying it unchanged cannot help."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class LLMAuthError(LLMRequestError):
    pass


class LLMUnavailable(Exception):  # deliberately not an LLMError: per-task handlers must not absorb it
    """The endpoint cannot serve any call: nothing listens there, or it refuses our credentials.

    Per-task failures (``LLMError``) become empty predictions; this one stops the whole run instead, because every
    further call would fail the same way and burn the budget (117 of 117 calls, before this existed).
    """

    def __init__(self, base_url: str, reason: str) -> None:
        self.base_url = _without_credentials(base_url)
        self.reason = reason
        super().__init__(
            f"cannot use the LLM at {self.base_url}: {reason}; start the embedded model (`make run`, or "
            "`scripts/llm_server.sh 8081` for the model alone) or set LLM_BASE_URL to a running OpenAI-compatible "
            "server"
        )


def _without_credentials(url: str) -> str:
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    return urlunsplit(parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else "")))


class LLMDeadline(LLMError):
    """The caller's deadline passed before an answer: the request was closed (or never sent), not retried."""


def _retry_after(response) -> float | None:
    """Seconds from a ``Retry-After`` of seconds or an HTTP date; None (the usual backoff) for anything else.

    The header comes from the provider, so a value that is neither (``soon``, ``nan``) must not fail the call.
    """
    value = response.headers.get("retry-after") if response is not None else None
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    return max(0.0, seconds) if math.isfinite(seconds) else None


def classify(exc: Exception) -> LLMError:
    """Map an SDK exception onto our hierarchy. The message never includes request headers or keys."""
    if isinstance(exc, LLMError):
        return exc
    if isinstance(exc, openai.APITimeoutError):
        return LLMTimeout("LLM request timed out")
    if isinstance(exc, openai.APIConnectionError):
        return LLMConnectionError(f"cannot reach the LLM server: {exc.__class__.__name__}")
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        detail = _short(exc)
        if status == 429:
            return LLMRateLimited(f"rate limited: {detail}", _retry_after(exc.response))
        if status in (401, 403):
            return LLMAuthError(f"LLM authentication failed ({status})", status)
        if status >= 500:
            return LLMServerError(f"LLM server error {status}: {detail}", status)
        return LLMRequestError(f"LLM rejected the request ({status}): {detail}", status)
    return LLMError(f"unexpected LLM failure: {exc.__class__.__name__}")


def _short(exc: openai.APIStatusError) -> str:
    body = exc.body if isinstance(exc.body, dict) else {}
    message = body.get("message") or (body.get("error") or {}).get("message") if body else None
    return str(message or exc.message)[:300]
