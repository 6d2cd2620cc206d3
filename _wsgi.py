"""The app gunicorn runs: ``gunicorn '_wsgi:app'`` (or ``'_wsgi:create_app()'``). The factory is ``web.app``.

Importing this module does nothing; ``app`` is built on first access (PEP 562), so tests and tools can import it and
build apps with their own settings.
"""

from __future__ import annotations

from web.app import create_app


def __getattr__(name: str):
    if name == "app":
        value = create_app()
        globals()["app"] = value
        return value
    raise AttributeError(name)
