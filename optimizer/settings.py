"""Every setting in one typed object, read from the environment and ``.env``, validated at start-up.

A bad value stops the process with one line naming the setting (see :func:`load_settings`), instead of a stack trace
at the first request. The configuration table in docs/configuration.md is generated from this class and checked
against it by a test, so the two cannot drift. Secrets (API keys, the Basic-auth password, the webhook secret) are
``SecretStr``: they never show up in a ``repr``, a log line or an error message.
"""

from __future__ import annotations

import base64
import os
import re
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from optimizer.learning.cost import Price, Quote
from optimizer.learning.prices import EMBEDDED_MODEL, quote
from optimizer.serving.llm import LLMConfig, ResponseFormat

Provider = Literal["auto", "openai", "azure", "ollama", "vllm", "llamacpp"]

ROOT = Path(__file__).resolve().parent.parent
# The profile every project uses unless its Extra params pick another: the LLM_* settings themselves.
DEFAULT_PROFILE = "default"
PLACEHOLDER_SECRETS = frozenset({"not-needed"})


def prompt_path(value: str) -> Path | None:
    """A ``DEFAULT_PROMPT=@path`` file: relative to the cwd first, else to the project (so any cwd works)."""
    for candidate in (Path(value), ROOT / value):
        if candidate.is_file():
            return candidate
    return None


# What each provider accepts for structured output; "auto" discovers it on the first call.
PROVIDER_FORMATS = {
    "auto": ResponseFormat.AUTO,
    "openai": ResponseFormat.JSON_SCHEMA,
    "azure": ResponseFormat.JSON_SCHEMA,
    "vllm": ResponseFormat.JSON_SCHEMA,
    "ollama": ResponseFormat.JSON_SCHEMA,
    "llamacpp": ResponseFormat.LLAMA_SCHEMA,
}


def _check_http_url(value: str) -> str:
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError("must be an http(s):// URL")
    _ = parsed.port
    return value.rstrip("/")


class LLMProfile(BaseModel):
    """One named LLM endpoint a project may choose (``LLM_PROFILES``). Defined by whoever runs the backend: the key
    lives here, in the server's environment, and never in Label Studio."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str
    model: str = Field(min_length=1, max_length=200)
    api_key: SecretStr = SecretStr("not-needed")
    concurrency: int = Field(4, ge=1, le=256)
    provider: Provider = "auto"
    # Currency units per 1M tokens; unset: the price table's for the model (see optimizer/learning/prices.py).
    price_input_per_1m: float | None = Field(None, ge=0)
    price_output_per_1m: float | None = Field(None, ge=0)

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _check_http_url(value)


# Unset LLM limits follow the endpoint (LLM_CONCURRENCY, LLM_GLOBAL_CONCURRENCY).
EMBEDDED_LIMIT, HOSTED_LIMIT = 2, 16
LIMIT_FIELDS = ("llm_concurrency", "llm_global_concurrency")
# Where the bundled llama.cpp server is reached: on this host (make run) or as compose's `llm` service.
EMBEDDED_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "llm"})


@dataclass(frozen=True)
class LLMLimits:
    """The LLM limits in force: per web process, stack-wide, and which of them were derived from the endpoint."""

    per_process: int
    stack_wide: int
    embedded: bool
    derived: tuple[str, ...] = ()

    @property
    def source(self) -> str:
        return "the embedded server's default" if self.embedded else "the default for a hosted endpoint"

    def to_dict(self) -> dict:
        return {"llm_concurrency": self.per_process, "llm_global_concurrency": self.stack_wide,
                "defaults": {name.upper(): self.source for name in self.derived}}  # fmt: skip

    def line(self) -> str:
        """``LLM limits: 16 per web process, 16 stack-wide (LLM_CONCURRENCY, LLM_GLOBAL_CONCURRENCY: the default
        for a hosted endpoint)``: what the start-up line says."""
        stack = f"{self.stack_wide} stack-wide" if self.stack_wide else "no stack-wide limit"
        names = ", ".join(name.upper() for name in self.derived)
        return f"LLM limits: {self.per_process} per web process, {stack}" + (
            f" ({names}: {self.source})" if names else ""
        )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=(".env", ".env.local"), env_file_encoding="utf-8", extra="ignore")
    _derived_limits: tuple[str, ...] = PrivateAttr(())

    # --- web service -------------------------------------------------------------------------------------------
    port: int = Field(9090, ge=1, le=65535, description="Port the web service listens on.")
    workers: int = Field(2, ge=1, le=64, description="gunicorn worker processes.")
    threads: int = Field(8, ge=1, le=256, description="Threads per gunicorn worker.")
    basic_auth_user: str = Field("", description="Basic-auth user for every route but /health; empty disables auth.")
    basic_auth_pass: SecretStr = Field(SecretStr(""), description="Basic-auth password.")
    webhook_secret: SecretStr = Field(
        SecretStr(""),
        description="Shared secret Label Studio sends in the X-Webhook-Secret header on /webhook (docs/security.md).",
    )
    allow_anonymous_writes: bool = Field(
        False,
        description="Without basic auth, let anyone roll back, pin, unpin and train (off: those routes answer 403).",
    )
    allow_anonymous_export: bool = Field(
        False,
        description="Without basic auth, let anyone export a connected project's annotations (off: 403).",
    )
    max_body_bytes: int = Field(32 * 1024 * 1024, ge=1024, description="Largest request body accepted, in bytes.")
    predict_deadline: float = Field(
        90.0,
        gt=0,
        description="Seconds a /predict batch may take; unfinished tasks get no prediction (LS asks again).",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level.")
    log_format: Literal["json", "text"] = Field("json", description="Log lines as JSON or plain text.")

    # --- redis -------------------------------------------------------------------------------------------------
    redis_url: str = Field("redis://localhost:6379/0", description="Redis holding policies, jobs and locks.")
    redis_namespace: str = Field("lsml", min_length=1, description="Prefix of every Redis key this service writes.")
    redis_timeout: float = Field(0.5, gt=0, description="Redis socket timeout in seconds for web requests.")

    # --- labelling LLM -----------------------------------------------------------------------------------------
    llm_provider: Provider = Field("auto", description="auto, openai, azure, ollama, vllm or llamacpp.")
    llm_base_url: str = Field(
        "http://127.0.0.1:8081/v1",
        validation_alias=AliasChoices("LLM_BASE_URL", "OPENAI_BASE_URL"),
        description="OpenAI-compatible endpoint for labelling (OPENAI_BASE_URL also accepted).",
    )
    llm_api_key: SecretStr = Field(
        SecretStr("not-needed"),
        validation_alias=AliasChoices("LLM_API_KEY", "OPENAI_API_KEY"),
        description="API key for the labelling endpoint (OPENAI_API_KEY also accepted).",
    )
    llm_model: str = Field(EMBEDDED_MODEL, min_length=1, description="Model name for labelling.")
    llm_timeout: float = Field(30.0, gt=0, description="Seconds per LLM request.")
    llm_max_retries: int = Field(2, ge=0, le=10, description="Retries on timeouts, 429 and 5xx.")
    llm_concurrency: int | None = Field(
        None,
        ge=1,
        le=256,
        description="Concurrent LLM requests per web process; unset: 2 for the embedded server, 16 for any other "
        "endpoint (RQ workers use the stack-wide limit instead).",
    )
    llm_global_concurrency: int | None = Field(
        None,
        ge=0,
        le=4096,
        description="LLM calls in flight across every web and RQ worker together (a Redis semaphore); 0: off; "
        "unset: 2 for the embedded server, 16 for any other endpoint.",
    )
    llm_max_tokens: int = Field(
        256,
        ge=1,
        description="Tokens per free-text answer area; Choices get a cap derived from the label config.",
    )
    llm_temperature: float = Field(0.0, ge=0, le=2, description="Sampling temperature for labelling.")
    llm_logprobs: bool = Field(True, description="Ask for logprobs to score predictions (falls back if refused).")
    llm_profiles: dict[str, LLMProfile] = Field(
        {},
        description='Named LLM endpoints projects may pick in Label Studio\'s Extra params, as JSON: {"name": '
        '{"base_url", "model", "api_key", "concurrency", "provider", "price_input_per_1m", "price_output_per_1m"}}; '
        "put it in .env.local (it holds keys).",
    )

    # --- embedded LLM server (started by make run / docker compose) ----------------------------------------------
    embedded_llm: bool = Field(True, description="Start the bundled llama.cpp server with SmolLM2-135M (make run).")
    llm_port: int = Field(8081, ge=1, le=65535, description="Port of the embedded LLM server.")
    llm_n_ctx: int = Field(4096, ge=512, description="Context window of the embedded LLM server, in tokens.")

    # --- optimiser LLM (proposes prompts; may be stronger than the labeller) -----------------------------------
    optimizer_base_url: str = Field("", description="Endpoint for the prompt proposer; empty: LLM_BASE_URL.")
    optimizer_api_key: SecretStr = Field(SecretStr(""), description="API key for the proposer; empty: LLM_API_KEY.")
    optimizer_model: str = Field("", description="Model for the proposer; empty: LLM_MODEL.")
    optimizer_temperature: float = Field(0.7, ge=0, le=2, description="Sampling temperature for proposals.")

    # --- prices (currency units per 1M tokens; empty: the vendored price table's for the model) ---------------------
    llm_price_input_per_1m: float | None = Field(
        None,
        ge=0,
        description="Price of 1M input tokens of the labelling model; empty: the price table's for LLM_MODEL.",
    )
    llm_price_output_per_1m: float | None = Field(
        None, ge=0, description="Price of 1M output tokens of the labelling model; empty: the price table's."
    )
    optimizer_price_input_per_1m: float | None = Field(
        None,
        ge=0,
        description="Price of 1M input tokens of the proposer; empty: LLM_PRICE_INPUT_PER_1M on the labeller's model, "
        "else the price table's.",
    )
    optimizer_price_output_per_1m: float | None = Field(
        None, ge=0, description="Price of 1M output tokens of the proposer; empty: as for the input price."
    )

    # --- policy ------------------------------------------------------------------------------------------------
    default_prompt: str = Field("@prompts/default.txt", description="Starting instruction: text, or @path to a file.")
    default_judge_prompt: str = Field(
        "@prompts/judge.txt",
        description="Starting instruction for reward-scoring (judge) projects: text, or @path to a file.",
    )

    # --- jobs and metrics ----------------------------------------------------------------------------------------
    rq_queue: str = Field("lsml-train", pattern=r"^[A-Za-z0-9_.:-]+$", description="RQ queue for training runs.")
    rq_bulk_queue: str = Field(
        "",
        pattern=r"^[A-Za-z0-9_.:-]*$",
        description="RQ queue for bulk pre-annotation (plans, chunks, re-predict after a promotion); empty: "
        "RQ_QUEUE + '-bulk'.",
    )
    prometheus_multiproc_dir: str = Field(
        "",
        description="Directory for gunicorn workers' shared /metrics files; empty: a fresh temporary directory.",
    )

    # --- retraining (webhooks → RQ worker → gated promotion) ---------------------------------------------------
    label_studio_url: str = Field(
        "", description="Label Studio base URL the worker reads annotations from (and posts re-predictions to)."
    )
    label_studio_api_key: SecretStr = Field(
        SecretStr(""), description="Label Studio legacy token or personal access token (JWT) for the worker."
    )
    label_studio_timeout: float = Field(30.0, gt=0, description="Seconds per Label Studio API request.")
    job_timeout: int = Field(3600, ge=10, description="Seconds a training job may run before RQ stops it.")
    job_result_ttl: int = Field(7 * 86400, ge=60, description="Seconds a finished job's result and report are kept.")
    retrain_every_n: int = Field(
        10, ge=0, description="Queue a training job after this many new annotations since the last run; 0: off."
    )
    optimize_budget: int = Field(200, ge=1, description="LLM calls one training job may spend (labeller + proposer).")
    optimize_max_seconds: float = Field(1800.0, gt=0, description="Wall-clock limit of one optimisation run.")
    train_min_gold: int = Field(4, ge=1, description="Fewest usable annotated tasks a training job needs.")
    train_seed: int = Field(0, ge=0, description="Seed of the optimiser's splits and sampling in training jobs.")
    train_reward: Literal["hard", "soft"] = Field(
        "hard",
        description="Per-item reward of training jobs: hard (the verifier's 0/1) or soft (the labeller's probability "
        "of the gold answer; promotion still needs the hard verifier not to regress).",
    )
    train_lease_ttl: float = Field(
        60.0, ge=1, description="Seconds a running job's per-project lease lives without a heartbeat (crash recovery)."
    )
    repredict_after_promote: bool = Field(
        False, description="After a promotion, re-predict the project's unlabelled tasks and post them to Label Studio."
    )
    bulk_chunk: int = Field(
        32, ge=1, le=1000, description="Tasks per bulk pre-annotation job (one RQ job, one import request to LS)."
    )
    bulk_threads: int = Field(
        3,
        ge=1,
        le=64,
        description="Bulk jobs one RQ worker runs at once, in threads (no fork), so one chunk's Label Studio reads "
        "and posts overlap the next chunk's LLM calls; the LLM limit still caps calls in flight.",
    )
    bulk_retries: int = Field(
        3,
        ge=0,
        le=20,
        description="Retries of a bulk chunk after a transient failure (Label Studio 5xx or timeout, LLM outage), "
        "with backoff; 0: none.",
    )
    bulk_retry_backoff: float = Field(
        5.0, ge=0, description="Seconds before a chunk's first retry; each next one waits 4 times longer (cap 10 min)."
    )
    bulk_claim_ttl: float = Field(
        30.0, ge=1, description="Seconds a bulk job's claim on a task lives without a heartbeat (crash recovery)."
    )
    predict_sync_max: int = Field(
        32,
        ge=1,
        description="Tasks one /predict answers itself; the rest go to the bulk job (needs LABEL_STUDIO_URL and key).",
    )
    event_log_size: int = Field(100, ge=0, description="Recent webhook events kept per project (for inspection).")

    # --- live quality (annotations scored against what the backend answered) -----------------------------------------
    served_answer_ttl: int = Field(
        30 * 86400,
        ge=60,
        description="Seconds the backend remembers its answer for a task, to score the task's annotation against it.",
    )
    live_gate_annotations: int = Field(
        30,
        ge=2,
        description="Annotations a new version is judged on: live F1 over its first N against its parent's.",
    )

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        parsed = urlparse(value)
        if parsed.scheme not in ("redis", "rediss", "unix") or not (parsed.hostname or parsed.path):
            raise ValueError("must look like redis://host:port/db")
        if parsed.scheme != "unix":
            _ = parsed.port  # raises ValueError for a non-numeric port
        return value

    @field_validator("llm_base_url", "optimizer_base_url", "label_studio_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return value if value == "" else _check_http_url(value)

    @field_validator("llm_profiles")
    @classmethod
    def _profile_names(cls, value: dict[str, LLMProfile]) -> dict[str, LLMProfile]:
        for name in value:
            if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name) or name == DEFAULT_PROFILE:
                raise ValueError(f"profile name {name!r} must be 1-64 of A-Z a-z 0-9 _ . - and not {DEFAULT_PROFILE!r}")
        return value

    @field_validator(
        "llm_price_input_per_1m",
        "llm_price_output_per_1m",
        "optimizer_price_input_per_1m",
        "optimizer_price_output_per_1m",
        "llm_concurrency",
        "llm_global_concurrency",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value):
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("basic_auth_pass")
    @classmethod
    def _auth_pair(cls, value: SecretStr, info: ValidationInfo) -> SecretStr:
        if bool(info.data.get("basic_auth_user")) != bool(value.get_secret_value()):
            raise ValueError("BASIC_AUTH_USER and BASIC_AUTH_PASS must be set together")
        return value

    @field_validator("default_prompt", "default_judge_prompt")
    @classmethod
    def _prompt_file(cls, value: str) -> str:
        if value.startswith("@") and prompt_path(value[1:]) is None:
            raise ValueError(f"file {value[1:]!r} not found (relative paths are read from the cwd or the project)")
        return value

    @model_validator(mode="after")
    def _limits_follow_the_endpoint(self) -> Settings:
        """Unset LLM limits follow the endpoint: the embedded llama.cpp server answers one request at a time, so
        more than 2 in flight only queue there (and risk LLM_TIMEOUT); a hosted API parallelises."""
        fallback = EMBEDDED_LIMIT if self.embedded_endpoint() else HOSTED_LIMIT
        self._derived_limits = tuple(name for name in LIMIT_FIELDS if getattr(self, name) is None)
        for name in self._derived_limits:
            setattr(self, name, fallback)
        return self

    # --- derived -----------------------------------------------------------------------------------------------
    def embedded_endpoint(self) -> bool:
        """Whether ``LLM_BASE_URL`` is the bundled llama.cpp server (``make run``'s, or compose's ``llm`` service)."""
        parsed = urlparse(self.llm_base_url)
        return self.embedded_llm and parsed.hostname in EMBEDDED_HOSTS and parsed.port == self.llm_port

    @property
    def llm_limits(self) -> LLMLimits:
        """The LLM limits in force and which were derived from the endpoint, for ``/health`` and the start-up line."""
        embedded = self.embedded_endpoint()
        fallback = EMBEDDED_LIMIT if embedded else HOSTED_LIMIT
        derived = tuple(name for name in self._derived_limits if getattr(self, name) == fallback)
        return LLMLimits(self.llm_concurrency, self.llm_global_concurrency, embedded, derived)

    @property
    def bulk_queue(self) -> str:
        return self.rq_bulk_queue or f"{self.rq_queue}-bulk"

    def bulk_retry_intervals(self) -> list[int]:
        """RQ's retry intervals for a chunk: ``BULK_RETRY_BACKOFF`` seconds, then 4 times longer each time."""
        return [int(min(600, self.bulk_retry_backoff * 4**n)) for n in range(self.bulk_retries)]

    def secret_values(self) -> list[str]:
        """Every secret this process holds, for the log scrubber; includes the Basic-auth header's token."""
        values = [
            getattr(self, name).get_secret_value()
            for name, f in type(self).model_fields.items()
            if f.annotation is SecretStr
        ]
        values += [profile.api_key.get_secret_value() for profile in self.llm_profiles.values()]
        if self.basic_auth_user:
            pair = f"{self.basic_auth_user}:{self.basic_auth_pass.get_secret_value()}"
            values.append(base64.b64encode(pair.encode()).decode())
        return [v for v in values if v and v not in PLACEHOLDER_SECRETS]

    def labeller_config(self) -> LLMConfig:
        """The labelling endpoint's config (the ``LLM_*`` settings); ``Services.labeller`` is its client."""
        return LLMConfig(
            base_url=self.llm_base_url,
            model=self.llm_model,
            api_key=self.llm_api_key.get_secret_value(),
            timeout=self.llm_timeout,
            max_retries=self.llm_max_retries,
            concurrency=self.llm_concurrency,
            temperature=self.llm_temperature,
            max_tokens=self.llm_max_tokens,
            response_format=PROVIDER_FORMATS[self.llm_provider],
            logprobs=self.llm_logprobs,
        )

    def profile(self, name: str) -> LLMConfig:
        """The labelling config of a named profile (``default``: the ``LLM_*`` settings). KeyError if unknown."""
        if name == DEFAULT_PROFILE:
            return self.labeller_config()
        profile = self.llm_profiles[name]
        return replace(
            self.labeller_config(),
            base_url=profile.base_url,
            model=profile.model,
            api_key=profile.api_key.get_secret_value(),
            concurrency=profile.concurrency,
            response_format=PROVIDER_FORMATS[profile.provider],
        )

    def price_quote(self, profile: str = DEFAULT_PROFILE, model: str | None = None) -> Quote:
        """What a labelling call through ``profile`` costs with ``model`` (a project may pick another model than the
        profile's): the profile's own prices where set, else the price table's. KeyError for an unknown profile."""
        if profile == DEFAULT_PROFILE:
            prices, provider, model = (
                (self.llm_price_input_per_1m, self.llm_price_output_per_1m),
                self.llm_provider,
                (model or self.llm_model),
            )
        else:
            chosen = self.llm_profiles[profile]
            prices, provider = (chosen.price_input_per_1m, chosen.price_output_per_1m), chosen.provider
            model = model or chosen.model
        return quote(model, provider, *prices)

    def proposer_quote(self) -> Quote:
        """The proposer's price: ``OPTIMIZER_PRICE_*``; else, on the labeller's own model, ``LLM_PRICE_*``; else the
        price table's for ``OPTIMIZER_MODEL``."""
        model = self.proposer_config().model
        same_model = model == self.llm_model and not self.optimizer_base_url
        fallback = (self.llm_price_input_per_1m, self.llm_price_output_per_1m) if same_model else (None, None)
        input = fallback[0] if self.optimizer_price_input_per_1m is None else self.optimizer_price_input_per_1m
        output = fallback[1] if self.optimizer_price_output_per_1m is None else self.optimizer_price_output_per_1m
        return quote(model, self.llm_provider if same_model else None, input, output)

    def prices(self, profile: str = DEFAULT_PROFILE) -> dict[str, Price]:
        """Per-role prices for a training run's cost estimate: the labeller through ``profile``, and the proposer."""
        try:
            labeller = self.price_quote(profile)
        except KeyError:  # the run's profile has since been removed: price it as the default
            labeller = self.price_quote(DEFAULT_PROFILE)
        return {"labeller": labeller.price, "proposer": self.proposer_quote().price}

    def proposer_config(self) -> LLMConfig:
        """The optimiser's endpoint (``OPTIMIZER_*``, else the labeller's); ``Services.proposer`` is its client."""
        same_endpoint = not self.optimizer_base_url
        key = self.optimizer_api_key.get_secret_value() or (
            self.llm_api_key.get_secret_value() if same_endpoint else "not-needed"
        )
        return LLMConfig(
            base_url=self.optimizer_base_url or self.llm_base_url,
            model=self.optimizer_model or self.llm_model,
            api_key=key,
            timeout=max(self.llm_timeout, 60.0),
            max_retries=self.llm_max_retries,
            concurrency=4,
            temperature=self.optimizer_temperature,
            max_tokens=1024,
            response_format=ResponseFormat.TEXT,
            logprobs=False,
        )


def _variable(loc: tuple) -> str:
    """The environment variable a validation error is about; for aliased settings, the alias actually set."""
    if not loc:
        return "settings"
    name = str(loc[0])
    for field_name, info in Settings.model_fields.items():
        alias = info.validation_alias
        choices = [str(c) for c in alias.choices] if isinstance(alias, AliasChoices) else []
        if name.upper() in {field_name.upper(), *(c.upper() for c in choices)}:
            present = [c for c in choices if c in os.environ]
            return present[0] if present else (choices[0] if choices else field_name.upper())
    return name.upper()


def describe_error(error: dict) -> str:
    """One line naming the setting and what is wrong with it; never the value (it may be a secret or a URL
    with a password in it)."""
    message = str(error["msg"]).removeprefix("Value error, ")
    inner = "".join(f".{part}" for part in error["loc"][1:])  # e.g. LLM_PROFILES.cheap.base_url
    return f"configuration error: {_variable(error['loc'])}{inner}: {message}"


def load_settings(**overrides) -> Settings:
    """Settings from the environment; on a bad value, print one line per bad setting and exit with status 2.

    Every entry point goes through this (gunicorn.conf.py in the master before any worker forks, ``_wsgi``,
    ``python -m optimizer ...``), so a typo stops the process at once instead of surfacing at the first request.
    """
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        for error in exc.errors():
            print(describe_error(error), file=sys.stderr)
        raise SystemExit(2) from None
