"""A small, self-owned implementation of the Label Studio ML backend protocol.

It follows the contract of the maintained upstream backend (``setup()``, ``predict(tasks, context=None, **kwargs)``,
``fit(event, data, **kwargs)``) and serves it with a Flask app factory. It knows nothing about prompts: the product
plugs in through a model factory. See ../shared/DESIGN.md §2 for why this is not PyPI's ``label-studio-ml``.
"""

from .app import create_app
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

__all__ = [
    "BasicAuth",
    "Conflict",
    "InvalidInput",
    "InvalidLabelConfig",
    "LabelStudioMLBase",
    "NotFound",
    "ProtocolError",
    "Unavailable",
    "create_app",
    "error_response",
    "json_response",
    "read_object",
]
