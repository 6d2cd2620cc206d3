"""Log lines as JSON (default) or text, with secrets scrubbed before they are written.

The scrubber is a last line of defence: code never formats keys into messages, but a library exception might echo
a header or URL. Any value of a configured secret, and any ``Authorization``/``api_key`` pattern, is masked.

Every line carries the id of the request it belongs to. The web layer sets :data:`request_id` (a context variable,
so this module needs no web framework) and the predictor copies the context into its worker threads, so an LLM
retry logged deep inside a batch still names its request.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time
from urllib.parse import urlsplit, urlunsplit

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

# Structured fields copied from ``extra=`` into JSON lines (an allow-list, so nothing is logged by accident).
FIELDS = (
    "request_id",
    "project",
    "job_id",
    "method",
    "path",
    "status",
    "duration_ms",
    "tasks",
    "failed",
    "principal",
    "lines",
)

_PATTERNS = [
    re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?)(basic|bearer)\s+[A-Za-z0-9+/=._-]+"),
    re.compile(r"(?i)(api[_-]?key[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]+"),
    re.compile(r"(sk-)[A-Za-z0-9_-]{8,}"),
]
_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    if value and len(value) >= 4:
        _secrets.add(value)


def scrub(text: str) -> str:
    for secret in _secrets:
        text = text.replace(secret, "***")
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + "***", text)
    return text


def public_url(url: str) -> str:
    """A URL safe to show or write down (``/health``, a CLI report): any ``user:password@`` part is dropped."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": scrub(record.getMessage()),
        }
        for key in FIELDS:
            value = getattr(record, key, None)
            if value not in (None, "", "-"):
                payload[key] = value
        if record.exc_info:
            payload["exc"] = scrub(self.formatException(record.exc_info))
        # Scrubbed before encoding too: JSON escaping could otherwise hide a secret containing a quote.
        return scrub(json.dumps(payload, ensure_ascii=False))


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))


class RequestIdFilter(logging.Filter):
    """Stamps each record with the current request id (``-`` outside a request) unless it already has one."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = request_id.get() or "-"
        return True


def make_handler(fmt: str = "json", stream=None) -> logging.Handler:
    handler = logging.StreamHandler(stream or sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"))
    handler.addFilter(RequestIdFilter())
    return handler


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    handler = make_handler(fmt)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("httpx", "httpx2", "openai", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
