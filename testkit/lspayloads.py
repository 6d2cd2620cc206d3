"""Webhook payloads as Label Studio 1.23.2 sends them (recorded in shared/ls-protocol), retargeted per test."""

from __future__ import annotations

import copy
import json
from datetime import datetime
from functools import cache
from pathlib import Path

SAMPLES = Path(__file__).resolve().parent / "data" / "ls-protocol"
CREATED_AT = "2026-11-21T22:36:30.369002Z"


@cache
def _sample(action: str) -> dict:
    return json.loads((SAMPLES / f"webhook.{action}.json").read_text())["request_json"]


def webhook(action: str, project_id: int, label_config: str, *, created_at: str = CREATED_AT, **fields) -> dict:
    payload = copy.deepcopy(_sample(action))
    payload["project"].update(id=project_id, label_config=label_config, created_at=created_at)
    payload.update(fields)
    return payload


def uid(project_id: int, created_at: str = CREATED_AT) -> str:
    """The project key Label Studio uses in /setup and /predict (``<id>.<created_at unix seconds>``)."""
    return f"{project_id}.{int(datetime.fromisoformat(created_at.replace('Z', '+00:00')).timestamp())}"
