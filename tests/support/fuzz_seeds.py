"""The real values every fuzzed request starts from, and the field coverage they are held to.

Why apart from the strategies (:mod:`tests.support.fuzzing`): a seed decides what code a mutation can reach (a
body that misses ``tasks`` never reaches the tasks loop), and ``test_every_openapi_body_field_is_seeded`` checks
these seeds against the OpenAPI document with :func:`schema_fields` and :func:`value_fields`, without drawing a
single case.
"""

from __future__ import annotations

import base64
import copy
import json
from dataclasses import dataclass
from functools import cache

from testkit.constants import SUPPORT_CONFIG
from testkit.lspayloads import SAMPLES

WEBHOOK_ACTIONS = (
    "ANNOTATION_CREATED",
    "ANNOTATION_UPDATED",
    "ANNOTATIONS_DELETED",
    "PROJECT_UPDATED",
    "START_TRAINING",
)


SEEDS = {
    "/predict": ("predict.retrieve_predictions.json", "predict.interactive_annotating.json"),
    "/setup": ("setup.json",),
    "/webhook": tuple(f"webhook.{action}.json" for action in WEBHOOK_ACTIONS),
    "/train": ("train.legacy.json",),
}


@cache
def recorded(name: str) -> dict:
    return json.loads((SAMPLES / name).read_text())["request_json"]


@dataclass(frozen=True)
class Known:
    """Real values of the running backend, so mutations reach deep code: its credentials and webhook secret, a
    project it knows with its policy versions, real job ids, Label Studio task ids and the dashboard's CSRF token."""

    project_id: str
    project_uid: str
    versions: tuple[str, ...]
    auth: tuple[str, str] = ("fuzz", "fuzz-secret-pass")
    webhook_secret: str = "fuzz-hook-secret"
    origin: str = "http://127.0.0.1"  # this backend's own origin (scheme, host and port)
    jobs: tuple[str, ...] = ()
    tasks: tuple[int, ...] = (1,)
    csrf_token: str = ""

    @property
    def authorization(self) -> str:
        return basic(*self.auth)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


EXTRA_PARAMS = {  # every key a project may choose (optimizer.project_settings.ProjectChoices), valid values
    "profile": "default",
    "model": "fake",
    "temperature": 0.2,
    "max_tokens": 64,
    "budget": 20,
    "retrain_every": 3,
    "verifiers": {"intent": "exact", "response": "regex:^[A-Z]"},
}


def body_seeds(path: str, known: Known) -> list[dict]:
    """Seed bodies for an OpenAPI path: recorded Label Studio payloads, completed with the fields they leave out,
    and the product's own bodies with real versions and task ids. ``[]`` for a path with no JSON body."""
    version, other = known.versions[-1], known.versions[0]
    if path in SEEDS:
        seeds = [copy.deepcopy(recorded(name)) for name in SEEDS[path]]
        if path == "/setup":
            seeds.append({**recorded("setup.json"), "project": known.project_uid, "extra_params": EXTRA_PARAMS})
        if path == "/predict":
            context = {"result": [{"from_name": "intent", "to_name": "chat", "type": "choices",
                                   "value": {"choices": ["Billing"], "text": ["a note"]}}]}  # fmt: skip
            seeds.append({**recorded("predict.retrieve_predictions.json"), "project": known.project_uid,
                          "params": {"context": context}, "extra_params": EXTRA_PARAMS})  # fmt: skip
        if path == "/webhook":
            created = recorded("webhook.ANNOTATION_CREATED.json")
            seeds.append({**created, "annotations": [created["annotation"]]})
        if path == "/train":
            seeds.append({**recorded("train.legacy.json"), "label_config": SUPPORT_CONFIG, "params": {"x": 1}})
        return seeds
    if path.endswith("/rollback"):
        return [{"version": other, "expected": version, "pin": False}, {"version": version}]
    if path.endswith("/pin"):
        return [{"version": version}, {}]
    if path.endswith("/predict"):
        return [{"tasks": list(known.tasks)}, {"tasks": [*known.tasks, 99999]}, {}]
    if path.endswith("/policies"):  # publish a policy written by hand
        demo = {"input": "hello there", "output": {"intent": ["Greeting"]}}
        return [{"instruction": "Label the conversation.", "demos": [demo], "demo_k": 1, "narrow_k": 0,
                 "live": True, "expected": version}, {"instruction": "Only this."}]  # fmt: skip
    return []


def form_seeds(known: Known) -> list[dict]:
    """The dashboard buttons' forms as its pages render them (``project.html``)."""
    token, (first, *_, last) = known.csrf_token, known.versions
    return [{"csrf_token": token, "version": first, "expected": last}, {"csrf_token": token},
            {"csrf_token": token, "instruction": "Typed on the page.", "live": "1", "expected": last}]  # fmt: skip


def schema_fields(document: dict, schema: dict, prefix: str = "", depth: int = 0) -> set[str]:
    """Every field path a JSON schema names (``params.context.result[].value.text``), following ``$ref``."""
    if depth > 12:
        return set()
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return schema_fields(document, document["components"]["schemas"][name], prefix, depth + 1)
    found: set[str] = set()
    for choice in schema.get("anyOf", []) + schema.get("oneOf", []) + schema.get("allOf", []):
        found |= schema_fields(document, choice, prefix, depth + 1)
    if "items" in schema:
        found |= schema_fields(document, schema["items"], prefix + "[]", depth + 1)
    for name, child in schema.get("properties", {}).items():
        path = f"{prefix}.{name}" if prefix else name
        found |= {path} | schema_fields(document, child, path, depth + 1)
    return found


def value_fields(value, prefix: str = "") -> set[str]:
    """Every field path a JSON value holds, in :func:`schema_fields`' notation."""
    found: set[str] = set()
    if isinstance(value, dict):
        for name, child in value.items():
            path = f"{prefix}.{name}" if prefix else str(name)
            found |= {path} | value_fields(child, path)
    elif isinstance(value, list):
        for child in value:
            found |= value_fields(child, prefix + "[]")
    return found


def request_schema(operation: dict) -> tuple[str, dict] | None:
    """(content type, schema) of an operation's body, or None."""
    body = operation.get("requestBody")
    if not body:
        return None
    ((kind, content),) = body["content"].items()
    return kind, content.get("schema", {})
