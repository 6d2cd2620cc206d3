"""Cross-site request forgery protection for the dashboard's buttons (rollback, pin, unpin, train).

Basic auth is the weak spot: once a person has logged in, the browser attaches the credentials to *any* request
to this origin, including a form another site submits. Two independent checks, both required on every POST:

- **a token only our pages know.** Each page embeds ``HMAC(key, caller's Authorization header)``; a page on another
  origin cannot read ours (same-origin policy), so it cannot learn the token. The key is random, made once and kept
  in Redis, so every gunicorn worker and replica issues and accepts the same tokens; tying the token to the
  credentials means it changes with the password and differs between users.
- **the request comes from our origin.** Browsers send ``Origin`` (and ``Sec-Fetch-Site``) on form posts; when
  present they must name this origin. A request with neither (curl, a script) still needs the token.

The origin check also guards every other write of the app (:func:`refuse_cross_site`): the JSON API reads its
body whatever the ``Content-Type``, so a page elsewhere could post a ``text/plain`` form that parses as JSON to
``/projects/<p>/rollback`` with the credentials the browser keeps for the dashboard. Label Studio and scripts call
from servers, which send neither header, so they are not affected. Hosts are compared without the scheme, so a
TLS-terminating proxy in front works as long as it passes the ``Host`` header through.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import urlsplit

from flask import Request

FIELD = "csrf_token"


class CsrfError(Exception):
    """A POST that failed a check; the message says which, for the 403 page, and ``field`` names the header (or
    form field) that failed it, for the JSON answer."""

    def __init__(self, message: str, field: str = FIELD) -> None:
        super().__init__(message)
        self.field = field


class CsrfGuard:
    def __init__(self, redis_client, key_name: str) -> None:
        self.redis = redis_client
        self.key_name = key_name
        self._key: bytes | None = None

    def _secret(self) -> bytes:
        if self._key is None:
            self.redis.set(self.key_name, secrets.token_hex(32), nx=True)
            value = self.redis.get(self.key_name)
            self._key = (value.decode() if isinstance(value, bytes) else value).encode()
        return self._key

    def token(self, request: Request) -> str:
        credentials = (request.headers.get("Authorization") or "").encode()
        return hmac.new(self._secret(), b"dashboard-post|" + credentials, hashlib.sha256).hexdigest()

    def check(self, request: Request) -> None:
        """Raise :class:`CsrfError` unless ``request`` comes from our origin (when it says) and carries our token."""
        check_origin(request)
        given = request.form.get(FIELD, "")
        # As bytes: ``compare_digest`` raises TypeError on a str with non-ASCII characters (a 500 the fuzz suite
        # found with a token of "\x80").
        if not given or not hmac.compare_digest(given.encode("utf-8", "surrogatepass"), self.token(request).encode()):
            raise CsrfError("the form's csrf_token is missing or wrong; reload the page and try again")


def check_origin(request: Request) -> None:
    """Raise :class:`CsrfError` if the browser says ``request`` came from another site or origin."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        raise CsrfError(f"the request came from another site (Sec-Fetch-Site: {site})", "Sec-Fetch-Site")
    origin = request.headers.get("Origin")
    if origin is not None and not _same_host(origin, request.host):
        raise CsrfError("the request came from another origin (Origin)", "Origin")
    if origin is None and request.referrer and not _same_host(request.referrer, request.host):
        raise CsrfError("the request came from a page on another origin (Referer)", "Referer")


def _same_host(url: str, host: str) -> bool:
    return urlsplit(url).netloc.lower() == host.lower()
