"""An OpenAPI 3.1 description of the HTTP surface, served at ``/openapi.json``.

Request bodies are the pydantic models that validate them (``requests.py``), so the description cannot drift from
what the routes accept. Other surfaces (the policy API, ``/metrics``) add their paths with :func:`describe`. The fuzz
suite (``tests/test_fuzz_http.py``) reads this document to learn every route and checks that every route the app
serves is described here.
"""

from __future__ import annotations

from collections.abc import Iterable

from flask import Flask
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from .requests import PredictRequest, SetupRequest, TrainRequest, WebhookRequest

REF = "#/components/schemas/{model}"
ERROR = {
    "type": "object",
    "required": ["error", "status"],
    "properties": {
        "error": {"type": "string", "description": "what is wrong, naming the field"},
        "status": {"type": "integer"},
        "field": {"type": ["string", "null"], "description": "path of the field to fix, e.g. tasks[0].data"},
        "request_id": {"type": ["string", "null"]},
    },
}


def form_body(fields: Iterable[str]) -> dict:
    """An HTML form's body (the dashboard's buttons)."""
    properties = {name: {"type": "string"} for name in fields}
    schema = {"type": "object", "properties": properties}
    return {"required": False, "content": {"application/x-www-form-urlencoded": {"schema": schema}}}


def json_body(model: type[BaseModel], required: bool = True) -> dict:
    return {
        "required": required,
        "content": {"application/json": {"schema": {"$ref": REF.format(model=model.__name__)}}},
    }


def operation(
    summary: str, *, ok: int = 200, request: dict | None = None, params: Iterable[dict] = (), html: bool = False
) -> dict:
    """One operation: its summary, parameters, optional body, success and the shared error answers.

    ``html``: a page for people (the dashboard), whose answers, errors included, are HTML rather than JSON.
    """
    if html:
        page = {"text/html": {}}
        responses = {str(ok): {"description": "page", "content": page}, "4XX": {"description": "error page"}}
    else:
        error = {
            "description": "error",
            "content": {"application/json": {"schema": {"$ref": REF.format(model="Error")}}},
        }
        responses = {str(ok): {"description": "success", "content": {"application/json": {}}}, "4XX": error}
    answer: dict = {"summary": summary, "responses": responses}
    if params:
        answer["parameters"] = list(params)
    if request is not None:
        answer["requestBody"] = request
    return answer


def path_param(name: str, pattern: str = r"^[A-Za-z0-9_.:-]{1,128}$") -> dict:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string", "pattern": pattern}}


def query_param(name: str, schema: dict | None = None) -> dict:
    return {"name": name, "in": "query", "required": False, "schema": schema or {"type": "string"}}


PROTOCOL_PATHS: dict[str, dict] = {
    "/health": {"get": operation("liveness, Redis state and LLM endpoint (no auth)")},
    "/": {"get": operation("same as /health, behind auth")},
    "/setup": {"post": operation("the model version for a project and label config", request=json_body(SetupRequest))},
    "/predict": {"post": operation("one prediction per task, in order", request=json_body(PredictRequest))},
    "/webhook": {"post": operation("a Label Studio webhook event", ok=201, request=json_body(WebhookRequest))},
    "/train": {
        "post": operation("legacy training call (START_TRAINING)", ok=201, request=json_body(TrainRequest, False))
    },
    "/versions": {"get": operation("the model versions of a project", params=[query_param("project")])},
    "/openapi.json": {"get": operation("this document")},
}
PROTOCOL_MODELS: tuple[type[BaseModel], ...] = (SetupRequest, PredictRequest, WebhookRequest, TrainRequest)


def describe(app: Flask, paths: dict[str, dict], models: Iterable[type[BaseModel]] = ()) -> None:
    """Add ``paths`` (and the models their bodies reference) to the app's document."""
    registry = app.extensions.setdefault("openapi", {"paths": {}, "models": []})
    registry["paths"].update(paths)
    registry["models"].extend(m for m in models if m not in registry["models"])


def document(app: Flask, title: str) -> dict:
    registry = app.extensions.get("openapi", {"paths": {}, "models": []})
    _, schemas = models_json_schema([(m, "validation") for m in registry["models"]], ref_template=REF)
    components = {**schemas.get("$defs", {}), "Error": ERROR}
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": "1"},
        "components": {
            "schemas": components,
            "securitySchemes": {"basic": {"type": "http", "scheme": "basic"}},
        },
        "security": [{"basic": []}],
        "paths": dict(sorted(registry["paths"].items())),
    }
