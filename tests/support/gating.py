"""Skip or fail for a missing component: under ``make test`` (``TEST_REQUIRE_ALL=1``) nothing may be skipped."""

from __future__ import annotations

import os

import pytest


def require_all() -> bool:
    """Under ``make test`` every component must be present: a missing one fails instead of skipping."""
    return os.environ.get("TEST_REQUIRE_ALL") == "1"


def need(condition: bool, reason: str) -> None:
    if condition:
        return
    if require_all():
        pytest.fail(f"required for the full suite: {reason}")
    pytest.skip(reason)
