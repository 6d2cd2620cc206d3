"""Redis replies as text: clients built with or without ``decode_responses`` give bytes or str, callers want str."""

from __future__ import annotations


def text(value) -> str | None:
    """``None`` stays ``None`` (a missing key); bytes are decoded as UTF-8; anything else goes through ``str``."""
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)
