"""The one start-up path of every process: validated settings, logging with secrets registered, metrics role.

gunicorn workers (via ``_wsgi``), ``python -m optimizer ...`` and RQ workers call :func:`start`; a bad setting
stops each of them with one line naming it (exit status 2) before anything else happens.
"""

from __future__ import annotations

from optimizer.logconfig import configure_logging, register_secret
from optimizer.runtime import telemetry
from optimizer.settings import Settings, load_settings


def prepare(settings: Settings, component: str) -> Settings:
    """Configure this process for ``component`` (``web``, ``worker``, ``cli``) from already-loaded settings."""
    configure_logging(settings.log_level, settings.log_format)
    for secret in settings.secret_values():
        register_secret(secret)
    telemetry.set_component(component)
    return settings


def start(component: str, **overrides) -> Settings:
    """Load and validate the settings (exit 2 with one line per bad setting), then :func:`prepare`."""
    return prepare(load_settings(**overrides), component)
