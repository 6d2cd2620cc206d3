"""HTTP Basic auth and the webhook shared secret, both compared in constant time."""

from __future__ import annotations

import base64
import binascii
import hmac


class BasicAuth:
    def __init__(self, user: str, password: str) -> None:
        self.user = user  # who a request that passed :meth:`check` acted as (for audit lines, never the password)
        self._expected = f"{user}:{password}".encode()

    def check(self, header: str | None) -> bool:
        # The scheme name is case-insensitive (RFC 7617 via RFC 9110 §11.1): "basic" and "BASIC" are Basic too.
        scheme, _, token = (header or "").strip().partition(" ")
        if scheme.lower() != "basic" or not token:
            return False
        try:
            given = base64.b64decode(token.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        return hmac.compare_digest(given, self._expected)


def secret_matches(given: str | None, expected: str) -> bool:
    return bool(expected) and given is not None and hmac.compare_digest(given.encode(), expected.encode())
