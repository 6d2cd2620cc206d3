"""(policy, schema, input text) → labels with a confidence score. The one code path for serving and optimising.

``/predict`` and the optimisation loop both call :meth:`Predictor.predict_many`, so the loop scores exactly what
users get. A failed item never fails its batch: it comes back as a :class:`Prediction` with ``error`` set and no
labels, and the caller decides what an empty answer means (an empty prediction in Label Studio, a wrong answer
for the verifier).

Score
-----
With logprobs (llama.cpp, OpenAI, vLLM): a chosen label's score is the probability the model gave its tokens,
``exp(sum of token logprobs)``; a free-text answer's is the per-token geometric mean, and so is a tag control's
(spans, number, rating, taxonomy, pairwise), taken over the whole answer. The prediction's score is the mean over the
controls it filled.

A learned ranker's answer (``ranker`` mode, or a ``cascade`` the ranker answered) scores its calibrated
confidence instead: the probability, estimated out of fold on the policy's pool, that the answer is right (for
multiple choice, its expected F1). ``Prediction.source`` says which of the two answered.

Without logprobs (the documented fallback): ``format quality × demo agreement``, where format quality is 1.0 for a
well-formed JSON answer and 0.7 for one recovered from plain text, scaled by the share of proposed labels that were
valid; and demo agreement is ``(1 + a) / (1 + k)`` when ``k`` demos were retrieved for the input and ``a`` of them
carry the predicted label (1.0 without retrieval). An empty answer scores 0.
"""

from __future__ import annotations

import contextvars
import hashlib
import math
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from enum import StrEnum

from optimizer.labelstudio.labelconfig import Schema
from optimizer.serving import ranked
from optimizer.serving.llm import LLMClient, Priority
from optimizer.serving.llm_errors import LLMDeadline, LLMError, LLMUnavailable
from optimizer.serving.modes import Source
from optimizer.serving.narrowing import narrow
from optimizer.serving.parsing import Parsed, parse_answer
from optimizer.serving.policy import Demo, Policy
from optimizer.serving.prompting import answer_token_cap, build_messages, json_schema, select_demos


class FailureReason(StrEnum):
    """Why a prediction came back without an answer. The value is the ``reason`` label in ``/metrics``."""

    NO_INPUT = "no_input"
    DEADLINE = "deadline"
    LLM_ERROR = "llm"
    # The model answered, but nothing in the answer was a valid label or text for the config.
    UNPARSABLE = "unparsable"
    # The answer was cut off at the token cap and nothing complete could be salvaged from it.
    TRUNCATED = "truncated"
    # A well-formed answer that found nothing to mark (no entity in the text for a Labels control): a real answer,
    # but Label Studio would store its empty result as a prediction, so none is sent and the task is counted here.
    NOTHING_FOUND = "nothing_found"
    INTERNAL = "internal"
    NOT_PREDICTED = "not_predicted"
    # Not predicted in this request: handed to the bulk job, which posts it to Label Studio (batches past
    # PREDICT_SYNC_MAX).
    QUEUED = "queued"
    # Not predicted: the project spent its daily limit (Extra params ``daily_spend_limit``) on LLM calls today.
    BUDGET = "budget"

    @property
    def answered(self) -> bool:
        """The LLM did answer (its text is in ``Prediction.raw``); it just held nothing usable."""
        return self in (FailureReason.UNPARSABLE, FailureReason.TRUNCATED, FailureReason.NOTHING_FOUND)


@dataclass(frozen=True)
class Failure:
    """A typed reason plus the human-readable detail (an LLM error's message), never compared as text."""

    reason: FailureReason
    detail: str = ""
    # Trying again later could answer (the LLM timed out, refused with 429/5xx, or was unreachable); a bulk chunk
    # retries these tasks, never an answer that held no valid label.
    retryable: bool = False

    def __str__(self) -> str:
        return self.detail or self.reason.value


@dataclass
class Prediction:
    choices: dict[str, list[str]] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)
    # Tag controls' values (spans, numbers, ratings, taxonomy paths, pairwise sides), each inside its tag's domain.
    values: dict[str, object] = field(default_factory=dict)
    score: float = 0.0
    control_scores: dict[str, float] = field(default_factory=dict)
    error: Failure | None = None
    raw: str = ""
    strict: bool = False
    dropped: int = 0
    # Kept from an answer cut off at the token cap: the labels that were complete.
    salvaged: bool = False
    # Who answered: the policy's learned ranker (no LLM call) or the LLM.
    source: Source = Source.LLM

    @property
    def empty(self) -> bool:
        return not any(self.choices.values()) and not any(t for t in self.texts.values()) and not self.values

    @property
    def answer(self) -> dict:
        """Every control's answer in one mapping, as verifiers and reports read it."""
        return {**self.choices, **self.texts, **self.values}

    @classmethod
    def failed(cls, reason: FailureReason, detail: str = "", *, retryable: bool = False) -> Prediction:
        return cls(error=Failure(reason, detail, retryable))

    @classmethod
    def from_rankings(cls, rankings) -> Prediction:
        """The rankers' answer: each control's labels, scored by its calibrated confidence."""
        scores = {name: r.confidence for name, r in rankings.items() if r.answer}
        prediction = cls(
            choices={name: list(r.answer) for name, r in rankings.items() if r.answer},
            score=round(sum(scores.values()) / len(scores), 6) if scores else 0.0,
            control_scores=scores,
            strict=True,
            source=Source.RANKER,
        )
        if prediction.empty:
            prediction.error = Failure(FailureReason.UNPARSABLE, "the ranker has no examples to answer from")
        return prediction


def _token_offsets(tokens: list[tuple[str, float]]) -> list[tuple[int, int, float]]:
    out, at = [], 0
    for text, logprob in tokens:
        out.append((at, at + len(text), logprob))
        at += len(text)
    return out


def _span_logprob(offsets, span: tuple[int, int]) -> tuple[float, int]:
    total, count = 0.0, 0
    for start, end, logprob in offsets:
        if end > span[0] and start < span[1]:
            total += logprob
            count += 1
    return total, count


def score_from_logprobs(parsed: Parsed, raw: str, tokens: list[tuple[str, float]]) -> dict[str, float]:
    offsets = _token_offsets(tokens)
    if not offsets or offsets[-1][1] != len(raw):
        # Token texts do not add up to the answer (some servers strip whitespace): align by position only
        # when they do, otherwise fall back to the whole answer's mean token probability.
        mean = sum(lp for _, lp in tokens) / max(1, len(tokens))
        filled = [n for n, labels in parsed.choices.items() if labels] + list(parsed.texts) + list(parsed.values)
        return dict.fromkeys(filled, math.exp(mean))
    scores: dict[str, float] = {}
    for name, labels in parsed.choices.items():
        spans = parsed.spans.get(name, [])
        if not labels:
            continue
        probs = []
        for span in spans:
            total, count = _span_logprob(offsets, span)
            if count:
                probs.append(math.exp(total))
        scores[name] = sum(probs) / len(probs) if probs else 0.0
    for name, text in parsed.texts.items():
        at = raw.find(text) if text else -1
        if at >= 0:
            total, count = _span_logprob(offsets, (at, at + len(text)))
            scores[name] = math.exp(total / count) if count else 0.0
    if parsed.values:
        whole = math.exp(sum(lp for _, lp in tokens) / len(tokens))
        scores.update(dict.fromkeys(parsed.values, whole))
    return scores


def score_fallback(parsed: Parsed, retrieved: Sequence[Demo]) -> dict[str, float]:
    """``retrieved``: the demos retrieved for this input (empty for a fixed demo set, which says nothing about it)."""
    kept = sum(len(v) for v in parsed.choices.values()) + len(parsed.texts) + len(parsed.values)
    quality = (1.0 if parsed.strict else 0.7) * (kept / (kept + parsed.dropped) if kept else 0.0)
    demos = retrieved
    scores = {}
    for name, labels in parsed.choices.items():
        if not labels:
            continue
        agree = sum(1 for d in demos if set(labels) & set(_as_list(d.output.get(name))))
        scores[name] = quality * (1 + agree) / (1 + len(demos))
    for name in [*parsed.texts, *parsed.values]:
        scores[name] = quality
    return scores


def _as_list(value) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def item_key(policy: Policy, schema: Schema, text: str) -> str:
    """Cache key for one (policy, item): the same pair is never sent to the LLM twice."""
    digest = hashlib.sha256(text.encode()).hexdigest()[:20]
    return f"{policy.version}:{schema.digest}:{digest}"


class Predictor:
    def __init__(self, llm: LLMClient, cache: dict | None = None) -> None:
        self.llm = llm
        # Optional (policy, item) → Prediction memo; the optimiser passes one so no pair is paid for twice.
        self.cache = cache
        self._pool: ThreadPoolExecutor | None = None
        self._pool_pid = 0
        self._pool_lock = threading.Lock()

    def _executor(self) -> ThreadPoolExecutor:
        # Created lazily per process: a pool made before gunicorn forks would have no threads in the child.
        with self._pool_lock:
            if self._pool is None or self._pool_pid != os.getpid():
                self._pool = ThreadPoolExecutor(
                    max_workers=max(1, self.llm.config.concurrency), thread_name_prefix="predict"
                )
                self._pool_pid = os.getpid()
            return self._pool

    def predict(
        self,
        policy: Policy,
        schema: Schema,
        text: str,
        deadline: float | None = None,
        priority: Priority = Priority.BULK,
    ) -> Prediction:
        """Never raises for LLM faults: a failure comes back as ``Prediction.failed``."""
        key = item_key(policy, schema, text) if self.cache is not None else None
        if key is not None and key in self.cache:
            return self.cache[key]
        demos = select_demos(policy, text)
        if ranked.learned(policy, schema):
            rankings = ranked.rankings(policy, schema, text)
            if ranked.answers(policy, schema, rankings):
                prediction = Prediction.from_rankings(rankings)
                if key is not None:
                    self.cache[key] = prediction
                return prediction
            narrowed = ranked.candidates(schema, rankings, policy.narrow_k)
        else:
            narrowed = narrow(policy, schema, text)
        try:
            completion = self.llm.complete(
                build_messages(policy, schema, text, demos, narrowed),
                json_schema(schema, narrowed),
                answer_token_cap(schema, self.llm.config.max_tokens),
                deadline=deadline,
                priority=priority,
            )
        except LLMDeadline as exc:
            return Prediction.failed(FailureReason.DEADLINE, str(exc), retryable=True)
        except LLMError as exc:
            return Prediction.failed(FailureReason.LLM_ERROR, str(exc), retryable=exc.retryable)
        parsed = parse_answer(schema, completion.text)
        if completion.tokens:
            scores = score_from_logprobs(parsed, completion.text, completion.tokens)
        else:
            scores = score_fallback(parsed, demos if policy.demo_k > 0 else ())
        filled = list(scores.values())
        prediction = Prediction(
            choices={k: v for k, v in parsed.choices.items() if v},
            texts={k: v for k, v in parsed.texts.items() if v},
            values={k: v for k, v in parsed.values.items() if v not in (None, [])},
            score=round(sum(filled) / len(filled), 6) if filled else 0.0,
            control_scores={k: round(v, 6) for k, v in scores.items()},
            raw=completion.text,
            strict=parsed.strict,
            dropped=parsed.dropped,
            salvaged=parsed.salvaged,
        )
        if parsed.empty:
            if completion.truncated:
                reason = FailureReason.TRUNCATED
            elif parsed.nothing_found:
                reason = FailureReason.NOTHING_FOUND
            else:
                reason = FailureReason.UNPARSABLE
            prediction.error = Failure(reason, "no valid label in the answer: " + completion.text[:120])
        if key is not None:
            self.cache[key] = prediction
        return prediction

    def llm_calls(self, policy: Policy, schema: Schema, texts: Sequence[str]) -> int:
        """How many of ``texts`` this policy would send to the LLM (the rankers answer the rest for nothing)."""
        if not ranked.learned(policy, schema):
            return len(texts)
        return sum(not ranked.answers(policy, schema, ranked.rankings(policy, schema, t)) for t in texts)

    def predict_many(
        self,
        policy: Policy,
        schema: Schema,
        texts: list[str | None],
        deadline: float | None = None,
        priority: Priority = Priority.BULK,
    ) -> list[Prediction]:
        """Predict a batch concurrently, in order. ``None`` inputs and items past ``deadline`` fail alone.

        The deadline reaches every LLM call, which closes its request when it passes; a task still running then
        comes back as ``DEADLINE`` without holding up the answer.
        """
        results: list[Prediction | None] = [None] * len(texts)
        pending = {}
        pool = self._executor()
        for i, text in enumerate(texts):
            if text is None:
                results[i] = Prediction.failed(FailureReason.NO_INPUT)
            elif len(texts) == 1:
                results[i] = self.predict(policy, schema, text, deadline, priority)
            else:
                # Each task runs in a copy of the caller's context, so its log lines keep the request id.
                run = contextvars.copy_context().run
                pending[pool.submit(run, self.predict, policy, schema, text, deadline, priority)] = i
        if pending:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            done, not_done = wait(pending, timeout=timeout)
            for future in done:
                error = future.exception()
                if isinstance(error, LLMUnavailable):  # the endpoint is dead: stop the batch, not one task
                    for other in not_done:
                        other.cancel()
                    raise error
                results[pending[future]] = (
                    Prediction.failed(FailureReason.INTERNAL, f"internal error: {error.__class__.__name__}")
                    if error
                    else future.result()
                )
            for future in not_done:
                future.cancel()
                results[pending[future]] = Prediction.failed(FailureReason.DEADLINE)
        return [r if r is not None else Prediction.failed(FailureReason.NOT_PREDICTED) for r in results]
