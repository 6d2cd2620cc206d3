"""The one path to a language model: the ``openai`` SDK against any OpenAI-compatible ``base_url``.

What this adds on top of the SDK, and why:
- **Errors by meaning** (``llm_errors``: timeout, connection, rate limit, server, request, auth), so callers and
  the retry loop can tell a transient fault from a permanent one. Auth and bad-request errors are never retried.
- **Bounded retries** on timeouts, connection faults, 429 (honouring ``Retry-After``) and 5xx, with jittered
  exponential backoff. The SDK's own retries are off, so there is exactly one retry policy.
- **A process-wide concurrency bound**, so a burst of ``/predict`` calls cannot open unbounded requests to the LLM.
- **Structured output per provider**: OpenAI's ``json_schema`` first, then llama.cpp's ``json_object`` + ``schema``
  (which rejects OpenAI's form with a 500), then plain text parsed strictly. The first form a server accepts is
  remembered for this client; it is a property of the server, not shared state.
- **Usage counters** (calls, errors, retries, tokens), thread-safe, for reports and metrics.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

import openai

from optimizer.serving.llm_errors import (
    LLMAuthError,
    LLMConnectionError,
    LLMDeadline,
    LLMError,
    LLMRateLimited,
    LLMServerError,
    LLMTimeout,
    LLMUnavailable,
    classify,
)

log = logging.getLogger(__name__)


class ResponseFormat(StrEnum):
    """How a call asks for structured output. ``AUTO`` tries the forms in :data:`DISCOVERY_ORDER` and keeps the
    first one the server accepts; the others are fixed (a provider known to take that form, or plain text)."""

    AUTO = "auto"
    JSON_SCHEMA = "json_schema"  # OpenAI's response_format={"type": "json_schema", ...} (OpenAI, Azure, vLLM, Ollama)
    LLAMA_SCHEMA = "llama_schema"  # llama.cpp's {"type": "json_object", "schema": ...}; it 500s on OpenAI's form
    TEXT = "text"  # no constraint: the answer is parsed strictly from text


DISCOVERY_ORDER = (ResponseFormat.JSON_SCHEMA, ResponseFormat.LLAMA_SCHEMA, ResponseFormat.TEXT)


class Priority(StrEnum):
    """Who waits for a call. An annotator's single-task ``/predict`` goes ahead of batches and bulk jobs."""

    INTERACTIVE = "interactive"
    BULK = "bulk"


class SlotLimiter(Protocol):
    """A limit on LLM calls in flight shared by every process that talks to the endpoint (see ``state.llmslots``)."""

    def acquire(self, priority: Priority, until: float | None) -> str | None:
        """A slot's token, or None if none came free before ``until`` (``time.monotonic()``)."""

    def release(self, token: str) -> None: ...


@dataclass(frozen=True)
class LLMConfig:
    base_url: str
    model: str
    api_key: str = field(default="not-needed", repr=False)
    timeout: float = 30.0
    max_retries: int = 2
    concurrency: int = 8
    temperature: float = 0.0
    max_tokens: int = 256
    response_format: ResponseFormat = ResponseFormat.AUTO
    logprobs: bool = True
    backoff: float = 0.5
    max_retry_after: float = 20.0
    # Batch runs (CLI, training jobs): after this many calls failed on connection or auth with none ever answered,
    # raise LLMUnavailable instead of spending the budget. 0 (the web service): every failure stays per task.
    fail_fast_after: int = 0

    def __post_init__(self) -> None:
        # A misspelt format is an error where it is set, never a silent fall back to discovery.
        try:
            object.__setattr__(self, "response_format", ResponseFormat(self.response_format))
        except ValueError:
            allowed = ", ".join(f.value for f in ResponseFormat)
            raise ValueError(f"response_format must be one of {allowed}, got {self.response_format!r}") from None


@dataclass
class Completion:
    text: str
    # (token text, log probability) for each generated token, when the provider returns them.
    tokens: list[tuple[str, float]] | None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # The server stopped at max_tokens (finish_reason "length"): the answer may be cut in the middle.
    truncated: bool = False


class Usage:
    """Thread-safe counters for one client.

    ``listeners`` hear every counter change; ``answer_listeners`` hear each answered call once, with its prompt and
    completion tokens together (what a call costs needs both, and one write per call rather than two).
    """

    FIELDS = ("calls", "errors", "retries", "prompt_tokens", "completion_tokens")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values = dict.fromkeys(self.FIELDS, 0)
        self.listeners: list[Callable[[str, int], None]] = []
        self.answer_listeners: list[Callable[[int, int], None]] = []

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._values[name] += amount
        for listener in self.listeners:
            listener(name, amount)

    def answered(self, prompt_tokens: int, completion_tokens: int) -> None:
        """One call answered, with the provider's ``usage``."""
        self.add("prompt_tokens", prompt_tokens)
        self.add("completion_tokens", completion_tokens)
        for listener in self.answer_listeners:
            listener(prompt_tokens, completion_tokens)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._values)


def _past(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline


class LLMClient:
    def __init__(
        self, config: LLMConfig, *, sleep: Callable[[float], None] = time.sleep, limiter: SlotLimiter | None = None
    ) -> None:
        self.config = config
        self.usage = Usage()
        self._sleep = sleep
        # The cross-process limit; the per-process semaphore below still bounds this process's threads.
        self.limiter = limiter
        self._slots = threading.BoundedSemaphore(max(1, config.concurrency))
        self._client = openai.OpenAI(
            base_url=config.base_url,
            api_key=config.api_key or "not-needed",
            timeout=config.timeout,
            max_retries=0,
        )
        fixed = config.response_format is not ResponseFormat.AUTO
        self._formats = [config.response_format] if fixed else list(DISCOVERY_ORDER)
        self._format_confirmed = fixed
        self._logprobs = config.logprobs
        self._logprobs_confirmed = not config.logprobs
        self._mode_lock = threading.Lock()
        self._answered = False  # any call ever answered (for fail_fast_after)
        self._dead_calls = 0

    @property
    def response_format(self) -> ResponseFormat:
        return self._formats[0]

    def complete(
        self,
        messages: list[dict],
        schema: dict | None = None,
        max_tokens: int | None = None,
        *,
        deadline: float | None = None,
        priority: Priority = Priority.BULK,
    ) -> Completion:
        """One chat completion with retries; raises an :class:`LLMError` subclass when it finally fails.

        ``deadline`` (``time.monotonic()``) bounds the whole call: each attempt's HTTP timeout is cut to what is
        left, so the connection is closed when the deadline passes. That matters for one-at-a-time servers:
        llama.cpp's server skips a queued request whose client has gone, instead of computing an answer nobody
        will read while the next annotator waits.
        """
        attempt = 0
        while True:
            form, logprobs = self._formats[0], self._logprobs
            try:
                with self._slots:
                    token = self._acquire(priority, deadline)
                    try:
                        return self._once(messages, schema, max_tokens, form, logprobs, self._timeout(deadline))
                    finally:
                        if token is not None:
                            self.limiter.release(token)
            except Exception as exc:  # classified below; anything unknown is not retried
                error = classify(exc)
                if self._adapt(error, form if schema is not None else None, logprobs):
                    continue
                self.usage.add("errors")
                if isinstance(error, LLMDeadline):
                    raise error from None
                if _past(deadline):
                    raise LLMDeadline(f"deadline passed while calling the LLM ({error})") from None
                if not error.retryable or attempt >= self.config.max_retries:
                    self._give_up(error)
                    raise error from None
                attempt += 1
                self.usage.add("retries")
                delay = self._delay(error, attempt)
                self._sleep(delay if deadline is None else max(0.0, min(delay, deadline - time.monotonic())))

    def _timeout(self, deadline: float | None) -> float:
        if deadline is None:
            return self.config.timeout
        left = deadline - time.monotonic()
        if left <= 0:
            raise LLMDeadline("deadline passed before the LLM request was sent")
        return min(self.config.timeout, left)

    def _acquire(self, priority: Priority, deadline: float | None) -> str | None:
        if self.limiter is None:
            return None
        token = self.limiter.acquire(priority, deadline)
        if token is None:
            raise LLMDeadline("deadline passed while waiting for a free LLM slot")
        return token

    def _give_up(self, error: LLMError) -> None:
        """With ``fail_fast_after``: a dead endpoint (nothing answered yet, only refusals) stops the run."""
        limit = self.config.fail_fast_after
        if not limit or self._answered or not isinstance(error, LLMConnectionError | LLMAuthError):
            return
        with self._mode_lock:
            self._dead_calls += 1
            dead = self._dead_calls
        if isinstance(error, LLMAuthError) or dead >= limit:
            raise LLMUnavailable(self.config.base_url, f"{dead} call(s) failed and none answered: {error}") from None

    def probe(self, timeout: float = 5.0) -> None:
        """Ask the endpoint for its models, once, quickly: raise :class:`LLMUnavailable` when nothing listens or our
        credentials are refused. Any other answer (a 404 from a server without ``/models``, a 500) means a server is
        there, and the calls themselves will tell more."""
        try:
            self._client.with_options(timeout=timeout, max_retries=0).get("/models", cast_to=bytes)
        except Exception as exc:  # classified below
            error = classify(exc)
            if isinstance(error, LLMConnectionError | LLMAuthError):
                raise LLMUnavailable(self.config.base_url, str(error)) from None
            if isinstance(error, LLMTimeout):
                log.warning("LLM did not list its models within %.0f s; trying anyway", timeout)

    def _delay(self, error: LLMError, attempt: int) -> float:
        if isinstance(error, LLMRateLimited) and error.retry_after is not None:
            return min(error.retry_after, self.config.max_retry_after)
        base = self.config.backoff * (2 ** (attempt - 1))
        return min(base * (0.75 + random.random() / 2), 8.0)

    def _adapt(self, error: LLMError, form: str | None, logprobs: bool) -> bool:
        """Step down to a simpler request when the server refused a feature not yet seen to work.

        Logprobs are dropped only when the refusal names them. The structured-output form is dropped on a 400, 422
        or 500 (llama.cpp answers OpenAI's ``json_schema`` with a 500), never on 502/503/504, which say the server
        is unavailable rather than that it dislikes the request. Only the form the failed request used is dropped,
        so concurrent failures of one form step down once, not once per thread.
        """
        status = getattr(error, "status", None)
        if isinstance(error, LLMAuthError) or status not in (400, 422, 500):
            return False
        with self._mode_lock:
            if logprobs and not self._logprobs_confirmed and "logprob" in str(error).lower():
                self._logprobs = False
                log.info("LLM server refused logprobs; continuing without them")
                return True
            if form is not None and not self._format_confirmed and len(self._formats) > 1:
                if self._formats[0] == form:
                    self._formats.pop(0)
                    log.info("LLM server refused response_format=%s; trying %s", form, self._formats[0])
                return True
        return False

    def _request(
        self, messages: list[dict], schema: dict | None, max_tokens: int | None, form: str, logprobs: bool
    ) -> dict:
        kwargs: dict = {
            "model": self.config.model,
            "messages": messages,
            "temperature": self.config.temperature,
            "max_tokens": max_tokens or self.config.max_tokens,
        }
        if schema is not None and form is ResponseFormat.JSON_SCHEMA:
            kwargs["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": schema, "strict": False},
            }
        elif schema is not None and form is ResponseFormat.LLAMA_SCHEMA:
            kwargs["response_format"] = {"type": "json_object", "schema": schema}
        if logprobs:
            # llama.cpp's server returns no logprobs unless top_logprobs is set too; OpenAI accepts both.
            kwargs["logprobs"] = True
            kwargs["top_logprobs"] = 1
        return kwargs

    def _once(
        self,
        messages: list[dict],
        schema: dict | None,
        max_tokens: int | None,
        form: str,
        logprobs: bool,
        timeout: float | None = None,
    ) -> Completion:
        kwargs = self._request(messages, schema, max_tokens, form, logprobs)
        self.usage.add("calls")
        # The SDK's generic ``post`` rather than ``chat.completions.create``: the same request, auth and error
        # mapping, without ``create``'s recursive TypedDict transform of the messages (~30% of a web worker's CPU per
        # task) or the typed-model construction of the answer (~250 us per call); only four fields are read here.
        # Profiled with py-spy in bench/ (see bench/README.md).
        options = {"timeout": timeout} if timeout is not None else {}
        raw = self._client.post("/chat/completions", body=kwargs, cast_to=bytes, options=options)
        self._answered = True
        if schema is not None:
            self._format_confirmed = True
        if "logprobs" in kwargs:
            self._logprobs_confirmed = True
        completion = _completion(raw)
        self.usage.answered(completion.prompt_tokens, completion.completion_tokens)
        return completion


def _completion(raw: bytes) -> Completion:
    """The answer text, token logprobs and usage from a chat-completion body.

    No choices is a server fault worth a retry (as before); a body that is not a chat completion at all is not
    retried (as when the SDK failed to read it).
    """
    try:
        body = json.loads(raw)
        choices = body.get("choices") or []
        if not choices:
            raise LLMServerError("LLM answered with no choices")
        choice = choices[0]
        text = (choice.get("message") or {}).get("content") or ""
        content = (choice.get("logprobs") or {}).get("content")
        tokens = [(str(t["token"]), float(t["logprob"])) for t in content] if content else None
        usage = body.get("usage") or {}
        prompt_tokens = int(usage.get("prompt_tokens") or 0)
        completion_tokens = int(usage.get("completion_tokens") or 0)
        truncated = choice.get("finish_reason") == "length"
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise LLMError(f"unexpected LLM failure: malformed answer ({exc.__class__.__name__})") from None
    return Completion(str(text), tokens, prompt_tokens, completion_tokens, truncated)
