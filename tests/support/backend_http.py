"""Reading a running backend over HTTP from a test: its JSON routes, a job until it ends, the events it logged."""

from __future__ import annotations

import time

import httpx


def backend_get(backend, path: str) -> dict:
    """GET ``path`` from the backend with its basic auth; the test fails on anything but 200."""
    response = httpx.get(backend.url + path, headers=backend.auth_header, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def finished(backend, job_id: str) -> dict | None:
    """The job's view once it finished or failed, else None (after a short pause, for ``wait_for``)."""
    view = backend_get(backend, f"/jobs/{job_id}")
    if view["status"] in ("finished", "failed"):
        return view
    time.sleep(0.2)
    return None


def labelstudio_backend_events(backend, project_id: int) -> list[dict]:
    """The Label Studio events the backend recorded for a project (``GET /projects/<id>/events``)."""
    return backend_get(backend, f"/projects/{project_id}/events")["events"]
