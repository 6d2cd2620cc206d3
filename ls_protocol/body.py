"""The one JSON body parser of every route: bytes in, a plain JSON object out, or an :class:`InvalidInput`.

Both surfaces (the Label Studio protocol routes and the policy API) read bodies here, so they refuse the same things
the same way. Beyond ``json.loads`` it refuses what would otherwise surface later as a 500: non-UTF-8 bytes,
``NaN``/``Infinity`` and numbers that overflow to it (not JSON, and not comparable), integers too long to convert,
nesting deeper than ``MAX_DEPTH`` (Python's decoder would raise ``RecursionError`` a little deeper, and code walking
the value later would too), and lone surrogates (``"\\ud800"`` decodes to a ``str`` that cannot be encoded
again, so it would fail when written to Redis or to the response).
"""

from __future__ import annotations

import json
import math
import re

from flask import request

from .errors import InvalidInput

MAX_DEPTH = 64


def _no_constants(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"{text[:40]} is out of range for a number")
    return number


def _surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _child(where: str, key: str) -> str:
    """The path of ``where``'s member ``key``: dotted for plain names, ``["..."]`` (ASCII-escaped) for any other."""
    if _NAME.match(key):
        return key if where == "body" else f"{where}.{key}"
    return f"{where}[{json.dumps(key)}]"


def check_value(value, field: str = "body", max_depth: int = MAX_DEPTH) -> None:
    """Refuse nesting past ``max_depth`` and strings (keys included) that are not valid Unicode, naming where."""
    stack = [(value, field, 0)]
    while stack:
        item, where, depth = stack.pop()
        if isinstance(item, dict | list) and depth >= max_depth:
            raise InvalidInput(f"{where} is nested more than {max_depth} levels deep", where)
        if isinstance(item, dict):
            for key, child in item.items():
                if _surrogates(key):
                    raise InvalidInput(f"{where} has a key that is not valid Unicode (a lone surrogate)", where)
                stack.append((child, _child(where, key), depth + 1))
        elif isinstance(item, list):
            stack.extend((child, f"{where}[{i}]", depth + 1) for i, child in enumerate(item))
        elif isinstance(item, str) and _surrogates(item):
            raise InvalidInput(f"{where} is not valid Unicode (it contains a lone surrogate)", where)


def parse_object(raw: bytes, *, required: bool = True) -> dict:
    """``raw`` as a JSON object; an empty body is ``{}`` when not ``required``."""
    if not raw.strip():
        if required:
            raise InvalidInput("request body is empty; expected a JSON object", "body")
        return {}
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_no_constants, parse_float=_finite)
    except UnicodeDecodeError:
        raise InvalidInput("request body is not UTF-8", "body") from None
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"request body is not valid JSON: {exc}", "body") from None
    except RecursionError:
        raise InvalidInput(f"request body is nested more than {MAX_DEPTH} levels deep", "body") from None
    except ValueError as exc:  # NaN/Infinity, or an integer past Python's digit limit
        raise InvalidInput(f"request body is not valid JSON: {exc}", "body") from None
    if not isinstance(data, dict):
        raise InvalidInput(f"request body must be a JSON object, got {_json_type(data)}", "body")
    check_value(data)
    return data


def read_object(*, required: bool = True) -> dict:
    """The current request's body as a JSON object (raises ``RequestEntityTooLarge`` past the app's limit)."""
    return parse_object(request.get_data(cache=True), required=required)


def _json_type(value) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)
