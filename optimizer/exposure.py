"""The one warning line for a service that anyone on the network can use: no basic auth on a non-loopback address.

Kept apart from the settings themselves: it is a judgement about where the process listens (gunicorn's bind
address, known only at start), not a property of any one value.
"""

from __future__ import annotations

import ipaddress

from optimizer.settings import Settings


def exposure_warning(settings: Settings, host: str) -> str | None:
    """The one line to print when the service listens beyond this machine with no basic auth, else None.

    Without auth anyone who reaches the port can read every prompt and score and make the backend call the LLM;
    rollbacks, pins and training still need ``ALLOW_ANONYMOUS_WRITES=1``, which this line also calls out.
    """
    if settings.basic_auth_user or _loopback(host):
        return None
    writes = (
        "and anyone may roll back, pin and train (ALLOW_ANONYMOUS_WRITES=1)"
        if settings.allow_anonymous_writes
        else "(writes such as rollback and pin stay refused)"
    )
    webhook = "" if settings.webhook_secret.get_secret_value() else "; /webhook is open too (set WEBHOOK_SECRET)"
    export = (
        "; anyone may export connected projects' annotations (ALLOW_ANONYMOUS_EXPORT=1)"
        if settings.allow_anonymous_export
        else ""
    )
    return (
        f"WARNING: serving without authentication on {host}: set BASIC_AUTH_USER and BASIC_AUTH_PASS; "
        f"until then anyone who reaches this port can read policies, scores and /metrics and run predictions "
        f"{writes}{webhook}{export}"
    )


def _loopback(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
