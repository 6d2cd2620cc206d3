"""A small, self-owned implementation of the Label Studio ML backend protocol.

It follows the contract of the maintained upstream backend (``setup()``, ``predict(tasks, context=None, **kwargs)``,
``fit(event, data, **kwargs)``) and serves it with a Flask app factory. It knows nothing about prompts: the product
plugs in through a model factory. See ../shared/DESIGN.md §2 for why this is not PyPI's ``label-studio-ml``.
"""

from .app import ProtectedRead, create_app
from .auth import BasicAuth
from .base import LabelStudioMLBase
from .body import read_object
from .errors import (
    Conflict,
    InvalidInput,
    InvalidLabelConfig,
    NotFound,
    ProtocolError,
    Unavailable,
    error_response,
    json_response,
)
from .openapi import describe, form_body, json_body, operation, path_param, query_param
from .requests import Payload, validate

__all__ = [
    "BasicAuth",
    "Conflict",
    "InvalidInput",
    "InvalidLabelConfig",
    "LabelStudioMLBase",
    "NotFound",
    "Payload",
    "ProtectedRead",
    "ProtocolError",
    "Unavailable",
    "create_app",
    "describe",
    "error_response",
    "form_body",
    "json_body",
    "json_response",
    "operation",
    "path_param",
    "query_param",
    "read_object",
    "validate",
]
