"""Per-project LLM settings: what a Label Studio project may choose in its model's **Extra params**, and no more.

Label Studio sends the *Connect Model* dialog's Extra params (a JSON object) as ``extra_params`` in ``/setup``; it
never sends them with ``/predict`` or webhooks. So ``/setup`` validates them here and the web layer stores the result
in Redis, where ``/predict``, training jobs and webhooks read the same copy.

What a project may set (every key is checked; anything else is refused with a message naming the key):

| key | what | bounds |
| --- | --- | --- |
| ``profile`` | a name from ``LLM_PROFILES`` (or ``default``, the ``LLM_*`` settings) | must exist |
| ``base_url`` | only as another way to name a profile: it must equal a profile's ``base_url`` | must match one |
| ``model`` | the model name sent to the profile's endpoint | 1-200 of ``A-Za-z0-9._:/@+-`` |
| ``temperature`` | labelling temperature | 0-2 |
| ``max_tokens`` | tokens per free-text answer | 1-32768 |
| ``budget`` | LLM calls one training job may spend | 1-100000 |
| ``retrain_every`` | new annotations that queue a training job; 0: off | 0-100000 |
| ``daily_spend_limit`` | LLM spend per UTC day (USD) past which ``/predict`` answers nothing | 0-1000000 |
| ``verifiers`` | ``{control: spec}``: ``{"answer": "exact"}``, ``{"amount": "numeric:0.5"}``, ``"regex:<p>"`` | below |

A verifier must name a control the model fills; a ``regex:`` pattern must compile in RE2 (linear-time matching,
so no backreferences or lookaround) and be at most 500 characters, since the RQ worker runs it on every gold item.

Why the refusals: endpoints and keys belong to whoever runs the backend. A Label Studio project admin must not be
able to point the backend at an arbitrary URL (server-side request forgery: the backend would call it with its own
network position, and with a key if one were attached), and secrets typed into Label Studio would be readable by
every project admin and stored in its database. So a ``base_url`` that is no profile's, an unknown profile and any
key that looks like a secret (``api_key``, ``token``, ``password``...) get a 400 at ``/setup``, which Label Studio
shows when the model is connected.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from optimizer.labelstudio.labelconfig import Schema
from optimizer.learning.verifiers import Verifier, named
from optimizer.logconfig import public_url
from optimizer.serving.llm import LLMConfig
from optimizer.settings import DEFAULT_PROFILE, Settings

_SECRET_KEY = re.compile(r"key|token|secret|password|passwd|credential|auth", re.IGNORECASE)


class ProjectSettingsError(ValueError):
    """Extra params that cannot be used; ``field`` names the key (``extra_params.<key>``) for the 4xx answer."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class ProjectChoices(BaseModel):
    """The validated Extra params of one project: only the non-secret knobs, each bounded."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    profile: str | None = Field(None, min_length=1, max_length=64)
    base_url: str | None = Field(None, max_length=2000)
    model: str | None = Field(None, pattern=r"^[A-Za-z0-9._:/@+-]{1,200}$")
    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int | None = Field(None, ge=1, le=32768)
    budget: int | None = Field(None, ge=1, le=100_000)
    retrain_every: int | None = Field(None, ge=0, le=100_000)
    daily_spend_limit: float | None = Field(None, ge=0, le=1_000_000)
    verifiers: dict[str, str] = Field(default_factory=dict)

    @field_validator("verifiers")
    @classmethod
    def _controls(cls, value: dict[str, str]) -> dict[str, str]:
        if any(not control for control in value):
            raise ValueError("a verifier needs a control name")
        return value

    def to_json(self) -> str:
        return self.model_dump_json(exclude_defaults=True)

    @classmethod
    def from_json(cls, text: str) -> ProjectChoices:
        return cls.model_validate_json(text)


def _quoted(part) -> bool:
    """Whether a step of a 400's path is a key no one could type as a dotted name (empty, spaced...)."""
    return not isinstance(part, int) and not str(part).isidentifier()


def _member(part) -> str:
    """One step of the path a 400 names: ``.budget``, ``[3]``, or ``[""]`` / ``["a b"]`` for a quoted key (the fuzz
    suite sent an empty key, and ``extra_params.`` named nothing)."""
    if isinstance(part, int):
        return f"[{part}]"
    return f"[{json.dumps(str(part), ensure_ascii=False)}]" if _quoted(part) else f".{part}"


def _verifier_refused(control: str, reason: str) -> ProjectSettingsError:
    """A refused ``verifiers`` entry: its path, quoted where the control's name needs it, leads the message."""
    field = f"extra_params.verifiers{_member(control)}"
    return ProjectSettingsError(field, f"{field}: {reason}")


def _first_error(exc: ValidationError) -> ProjectSettingsError:
    error = exc.errors()[0]
    loc = "".join(_member(p) for p in error["loc"])
    key = str(error["loc"][0]) if error["loc"] else ""
    # A path with a quoted step (extra_params.verifiers[""]) is only findable if the message shows all of it: its
    # last name is empty or spaced, so naming the step alone names nothing (the fuzz suite's {"verifiers": {"": 1}}).
    plain = not any(_quoted(p) for p in error["loc"] or (key,))
    if error["type"] == "extra_forbidden":
        if _SECRET_KEY.search(key):
            message = (
                f'"{key}" looks like a secret: secrets live on the backend server (LLM_PROFILES in .env.local), '
                "never in Label Studio; pick a profile by name instead"
            )
        else:
            allowed = ", ".join(ProjectChoices.model_fields)
            message = f'"{key}" is not a setting a project can choose; use {allowed}'
    else:
        message = f'"{loc.lstrip(".")}": ' + str(error["msg"]).removeprefix("Value error, ")
    field = f"extra_params{loc or _member(key)}"
    if not plain:
        message = f"{field}: {message}"
    return ProjectSettingsError(field, message)


def parse_choices(raw, settings: Settings, schema: Schema | None) -> ProjectChoices | None:
    """Validate Label Studio's ``extra_params`` (None or ``{}``: the project uses the defaults).

    Raises :class:`ProjectSettingsError` naming the first bad key. A ``base_url`` must be a configured profile's
    (compared without a trailing slash) and becomes that profile; it never reaches an LLM client by itself.
    """
    if raw is None or raw == {}:
        return None
    if not isinstance(raw, Mapping):
        raise ProjectSettingsError("extra_params", '"extra_params" must be a JSON object')
    try:
        choices = ProjectChoices.model_validate(dict(raw))
    except ValidationError as exc:
        raise _first_error(exc) from None
    profiles = settings.llm_profiles
    names = ", ".join([DEFAULT_PROFILE, *profiles])
    if choices.profile is not None and choices.profile != DEFAULT_PROFILE and choices.profile not in profiles:
        raise ProjectSettingsError(
            "extra_params.profile",
            f'"profile": no profile named {choices.profile!r} on this backend; use one of {names}',
        )
    if choices.base_url is not None:
        wanted = choices.base_url.rstrip("/")
        matching = [n for n, p in profiles.items() if p.base_url == wanted]
        if not matching:
            # The URL is not echoed: it may carry credentials, and the refusal is the same whatever it is.
            raise ProjectSettingsError(
                "extra_params.base_url",
                '"base_url" is not the endpoint of any LLM profile on this backend; projects may only pick '
                f'endpoints its operator configured (LLM_PROFILES): use one of {names} as "profile"',
            )
        if choices.profile is not None and choices.profile not in matching:
            raise ProjectSettingsError(
                "extra_params.base_url", f'"base_url" is not the endpoint of profile {choices.profile!r}'
            )
        choices = choices.model_copy(update={"profile": choices.profile or matching[0], "base_url": None})
    for control, spec in choices.verifiers.items():
        # Checked here, at /setup, rather than when a stored copy is read: a pattern stored before RE2 must not
        # turn /predict (which never runs verifiers) into a 500; a training run names it when it builds verifiers.
        try:
            named(spec)  # ValueError for an unknown name, a bad tolerance, or a regex RE2 refuses
        except ValueError as exc:
            raise _verifier_refused(control, str(exc)) from None
    if schema is not None:
        for control in choices.verifiers:
            if control not in schema.outputs:
                known = ", ".join(schema.outputs)
                raise _verifier_refused(
                    control, f"the label config has no control {control!r} the model fills; controls: {known}"
                )
    return choices


@dataclass(frozen=True)
class ProjectConfig:
    """A project's settings after defaults: what /predict, training and webhooks use, and what the API shows."""

    profile: str
    labeller_config: LLMConfig
    budget: int
    retrain_every: int
    verifier_specs: dict[str, str] = field(default_factory=dict)
    customised: bool = False
    daily_spend_limit: float | None = None  # None: no limit

    def verifiers(self) -> dict[str, Verifier]:
        return {control: named(spec) for control, spec in self.verifier_specs.items()}

    def public(self) -> dict:
        """Everything but secrets: the profile, its endpoint without credentials, the knobs in force."""
        llm = self.labeller_config
        return {
            "profile": self.profile,
            "customised": self.customised,
            "llm": {
                "base_url": public_url(llm.base_url),
                "model": llm.model,
                "temperature": llm.temperature,
                "max_tokens": llm.max_tokens,
                "concurrency": llm.concurrency,
            },
            "budget": self.budget,
            "retrain_every": self.retrain_every,
            "verifiers": dict(self.verifier_specs),
            "daily_spend_limit": self.daily_spend_limit,
        }


class ProfileGone(LookupError):
    """Stored settings name a profile the operator has since removed from ``LLM_PROFILES``."""


def effective(settings: Settings, choices: ProjectChoices | None) -> ProjectConfig:
    """Defaults from the environment, overridden by the project's choices. Raises :class:`ProfileGone`."""
    choices = choices or ProjectChoices()
    profile = choices.profile or DEFAULT_PROFILE
    try:
        llm = settings.profile(profile)
    except KeyError:
        raise ProfileGone(
            f"this project's Extra params pick LLM profile {profile!r}, which is no longer in LLM_PROFILES; "
            "add it back or change the project's Extra params"
        ) from None
    overrides = {"model": choices.model, "temperature": choices.temperature, "max_tokens": choices.max_tokens}
    llm = replace(llm, **{k: v for k, v in overrides.items() if v is not None})
    return ProjectConfig(
        profile=profile,
        labeller_config=llm,
        budget=choices.budget if choices.budget is not None else settings.optimize_budget,
        retrain_every=choices.retrain_every if choices.retrain_every is not None else settings.retrain_every_n,
        verifier_specs=dict(choices.verifiers),
        customised=bool(json.loads(choices.to_json())),
        daily_spend_limit=choices.daily_spend_limit,
    )
