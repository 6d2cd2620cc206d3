"""How Label Studio names a project, and the numeric id inside that name.

Label Studio names a project ``<id>.<created_at as unix seconds>`` in ``/setup`` and ``/predict`` (the protocol
layer rebuilds the same uid from webhook payloads), while people, the SDK and the REST API use the bare numeric id.
This is pure string parsing: the export CLI and the web layer read ids without importing Redis.
"""

from __future__ import annotations


def numeric_id(project: str) -> int | None:
    """The Label Studio project id inside a uid (``"12.1700000000"`` → 12), or None for a non-LS key."""
    head = project.split(".", 1)[0]
    return int(head) if head.isdigit() else None
