"""The e2e harness's gunicorn backend on its own (no Label Studio): configured only by what the test passes, its
request log readable, and nothing left running after it stops. The training e2e builds on these guarantees."""

from __future__ import annotations

import os
import re
import sys
import time

import httpx

from testkit.backendprocess import basic_auth_header


def test_backend_runs_under_gunicorn_with_only_the_given_settings(start_backend, fake_llm):
    backend = start_backend(fake_llm.base_url, basic_auth=("ls", "pw-123456"), workers=2)

    health = httpx.get(backend.url + "/health", timeout=5).json()
    assert health["status"] == "UP"
    assert health["llm_base_url"] == fake_llm.base_url  # not the repo .env's embedded LLM
    assert httpx.post(backend.url + "/setup", json={"schema": "<View/>"}, timeout=5).status_code == 401
    authorised = {"Authorization": basic_auth_header("ls", "pw-123456")}
    schema = '<View><Text name="t" value="$text"/><Choices name="c" toName="t"><Choice value="a"/></Choices></View>'
    setup = httpx.post(backend.url + "/setup", json={"schema": schema}, headers=authorised, timeout=10)
    assert setup.status_code == 200 and setup.json()["model_version"].startswith("pv-")

    logged = backend.wait_for_request("/setup", 2)
    assert [(a.method, a.status) for a in logged] == [("POST", 401), ("POST", 200)]
    assert logged[0].user_agent.startswith("python-httpx/")


def test_stop_ends_gunicorn_its_workers_and_spawned_processes(start_backend, fake_llm):
    backend = start_backend(fake_llm.base_url)
    helper = backend.spawn([sys.executable, "-c", "import time; time.sleep(300)"], name="helper")
    workers = _worker_pids(backend)
    assert len(workers) == 2
    pids = [backend.web.pid, helper.pid, *workers]
    assert all(_running(pid) for pid in pids)

    backend.stop()

    assert not any(_running(pid) for pid in pids)


def _worker_pids(backend, timeout: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while True:
        pids = [int(p) for p in re.findall(r"Booting worker with pid: (\d+)", backend.web.log_path.read_text())]
        if len(pids) >= backend.workers or time.monotonic() > deadline:
            return pids
        time.sleep(0.1)


def _running(pid: int) -> bool:
    """Alive and not a zombie waiting to be reaped."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False
