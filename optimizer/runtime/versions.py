"""The ``model_version`` Label Studio sees: the policy, the part of the label config the backend answers, and the
model that answers, in one string.

Label Studio decides what to predict again by ``model_version`` alone (its Retrieve Predictions skips every task
holding a prediction of the current version). So the version must change whenever what answers changes:

- **the policy** (instruction, demos, narrowing...): its content hash, ``pv-<12 hex>``;
- **the label config's contract** (``Schema.contract``: the fields read, the controls filled, their labels, choice
  mode and bounds): ``c<8 hex>``. A label added in Settings → Labeling Interface makes every task ask again; a
  header or a style does not;
- **the model**: the project's profile, endpoint, model name and temperature (``m<8 hex>``): switching a project's
  profile or model in Extra params re-predicts.

The form is ``pv-3f9a1c2b7d4e.c1a2b3c4d.m5e6f7a8b``: the policy part comes first and is the policy's own version,
so any served version names the policy that answered (:func:`policy_version`), and the policy history lists the
served versions each policy has had (``ProjectRegistry.served_versions``). ``/setup``, ``/predict`` and bulk runs
all compute it here, from the same three parts, so they always agree.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

from optimizer.labelstudio.labelconfig import Schema
from optimizer.logconfig import public_url
from optimizer.project_settings import ProjectConfig

_SERVED = re.compile(r"^(?P<policy>[A-Za-z0-9_:-]+)\.c(?P<config>[0-9a-f]{8})\.m(?P<model>[0-9a-f]{8})$")


def model_fingerprint(config: ProjectConfig) -> str:
    """What answers: the profile, its endpoint (no credentials), the model name and the temperature."""
    llm = config.labeller_config
    identity = [config.profile, public_url(llm.base_url), llm.model, llm.temperature]
    return hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:8]


@dataclass(frozen=True)
class ServedVersion:
    policy: str
    config: str
    model: str

    def __str__(self) -> str:
        return f"{self.policy}.c{self.config}.m{self.model}"

    @classmethod
    def of(cls, policy_version: str, schema: Schema, config: ProjectConfig) -> ServedVersion:
        return cls(policy_version, schema.fingerprint, model_fingerprint(config))

    @classmethod
    def parse(cls, text: str) -> ServedVersion | None:
        found = _SERVED.match(text)
        return cls(found["policy"], found["config"], found["model"]) if found else None


def served_version(policy_version: str, schema: Schema, config: ProjectConfig) -> str:
    return str(ServedVersion.of(policy_version, schema, config))


def parts(policy_version: str, schema: Schema, config: ProjectConfig) -> dict:
    """What a served version is made of, in words a person can check (kept in the project's served-version log)."""
    labels = {c.name: len(c.labels) for c in schema.choices}
    return {"policy": policy_version, "config": schema.fingerprint, "model": model_fingerprint(config),
            "profile": config.profile, "model_name": config.labeller_config.model,
            "controls": list(schema.outputs), "labels": labels}  # fmt: skip


def policy_version(version: str) -> str:
    """The policy a served version names (a bare policy version is returned as it is)."""
    parsed = ServedVersion.parse(version)
    return parsed.policy if parsed else version
