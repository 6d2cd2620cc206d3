"""The backend as users run it: a real ``gunicorn _wsgi:app`` process tree on a free loopback port.

End-to-end tests must see what Label Studio sees: several forked workers that share nothing but Redis, real HTTP,
real basic auth, every request on record. So the backend runs as a subprocess, configured only through environment
variables, in a scratch directory so neither the repo's ``.env`` nor a developer's ``.env.local`` leaks in (settings
the test does not pass are also removed from the inherited environment).

Every request the backend answers is written to a request log by a gunicorn hook
(``testkit/gunicorn_e2e_conf.py``,
which also loads the project's own ``gunicorn.conf.py``), and :meth:`BackendProcess.requests` reads it back. That is
how tests observe what Label Studio actually called (path, status, user agent) without a proxy in between.
Extra processes that need the same configuration, such as an RQ worker, are started with
:meth:`BackendProcess.spawn` and stopped with the backend.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from testkit.redisserver import free_port

ROOT = Path(__file__).resolve().parents[1]
GUNICORN_CONF = Path(__file__).resolve().parent / "gunicorn_e2e_conf.py"
PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class Access:
    """One request the backend answered, from the request log."""

    method: str
    path: str
    status: int
    user_agent: str

    @property
    def from_label_studio_ml_api(self) -> bool:
        """Label Studio's ML API connector (health, setup, predict, train) sends ``heartex/<version>``."""
        return self.user_agent.startswith("heartex/")


def settings_env_names() -> set[str]:
    """Every environment name :class:`optimizer.settings.Settings` reads, aliases included."""
    from optimizer.settings import Settings

    names = set()
    for name, field in Settings.model_fields.items():
        names.add(name.upper())
        alias = field.validation_alias
        for choice in getattr(alias, "choices", None) or ([alias] if isinstance(alias, str) else []):
            names.add(str(choice).upper())
    return names


def basic_auth_header(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux to SIGTERM the child when the test process dies (a killed CI job leaks nothing).

    The libc function is resolved here, before the fork, so the child only makes one system call.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return lambda: prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class ManagedProcess:
    """A child process in its own session, so stopping it also stops every process it forked."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        self.name = name
        self.log_path = cwd / f"{name}.log"
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent(),
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the process group (graceful), then SIGKILL whatever is left after ``grace`` seconds."""
        if self.alive():
            self._signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(grace)
        self._signal(signal.SIGKILL)  # stragglers: forked children that outlived their parent
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        self._log.close()

    def _signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)


class BackendProcess:
    """``gunicorn _wsgi:app`` with gthread workers, plus any helper processes spawned with the same environment."""

    def __init__(
        self,
        *,
        redis_url: str,
        llm_base_url: str,
        namespace: str,
        basic_auth: tuple[str, str] | None = None,
        webhook_secret: str = "",
        workers: int = 2,
        threads: int = 4,
        env: dict[str, str] | None = None,
        config: Path = GUNICORN_CONF,
        app: str = "_wsgi:app",
    ) -> None:
        self.app = app  # another WSGI target, e.g. testkit.pidapp:app, which tags answers with the worker's pid
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.basic_auth = basic_auth
        self.webhook_secret = webhook_secret
        self.workers = workers
        self.threads = threads
        self.config = config  # benchmarks pass the project's gunicorn.conf.py: no per-request test log
        self.dir = Path(tempfile.mkdtemp(prefix="backend-e2e-"))
        self.request_log = self.dir / "requests.log"
        self.env = self._environment(redis_url, llm_base_url, namespace, env or {})
        self.processes: list[ManagedProcess] = []
        self.web: ManagedProcess | None = None

    def _environment(self, redis_url: str, llm_base_url: str, namespace: str, extra: dict[str, str]) -> dict:
        inherited = {k: v for k, v in os.environ.items() if k.upper() not in settings_env_names()}
        user, password = self.basic_auth or ("", "")
        return {
            **inherited,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")])),
            "PYTHONUNBUFFERED": "1",
            "REDIS_URL": redis_url,
            "REDIS_NAMESPACE": namespace,
            "LLM_BASE_URL": llm_base_url,
            "LLM_MODEL": "fake",
            "LLM_API_KEY": "not-needed",
            "LOG_FORMAT": "text",
            "BASIC_AUTH_USER": user,
            "BASIC_AUTH_PASS": password,
            "WEBHOOK_SECRET": self.webhook_secret,
            "EMBEDDED_LLM": "0",
            "E2E_REQUEST_LOG": str(self.request_log),
            **extra,
        }

    @property
    def auth_header(self) -> dict[str, str]:
        return {"Authorization": basic_auth_header(*self.basic_auth)} if self.basic_auth else {}

    def start(self, timeout: float = 60.0) -> BackendProcess:
        argv = [sys.executable, "-m", "gunicorn", self.app, "--bind", f"127.0.0.1:{self.port}"]
        argv += ["--workers", str(self.workers), "--threads", str(self.threads), "--worker-class", "gthread"]
        argv += ["--timeout", "120", "--graceful-timeout", "5", "--no-control-socket", "--pythonpath", str(ROOT)]
        argv += ["--config", str(self.config)]
        self.web = self.spawn(argv, name="gunicorn")
        self._wait_healthy(timeout)
        return self

    def spawn(self, argv: list[str], name: str) -> ManagedProcess:
        """Start another process with the backend's environment and scratch directory, stopped by :meth:`stop`."""
        process = ManagedProcess(name, argv, self.env, self.dir)
        self.processes.append(process)
        return process

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if not self.web.alive():
                break
            try:
                response = httpx.get(self.url + "/health", timeout=2)
                if response.status_code == 200 and response.json().get("status") == "UP":
                    return
                last = f"{response.status_code} {response.text[:200]}"
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(0.2)
        tail = self.web.log_tail()
        self.stop()
        raise RuntimeError(f"backend did not become healthy on {self.url} ({last}); log tail:\n{tail}")

    def requests(self, path: str | None = None) -> list[Access]:
        """What the backend answered so far, oldest first, optionally only for one path."""
        if not self.request_log.exists():
            return []
        entries = []
        for line in self.request_log.read_text(errors="replace").splitlines():
            parts = line.split("\t")
            if len(parts) != 4:
                continue
            method, url_path, status, agent = parts
            if path is None or url_path == path:
                entries.append(Access(method, url_path, int(status), agent))
        return entries

    def wait_for_request(self, path: str, count: int, timeout: float = 10.0) -> list[Access]:
        """Wait until at least ``count`` requests to ``path`` were logged (the log line lags the answer)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            seen = self.requests(path)
            if len(seen) >= count:
                return seen
            time.sleep(0.05)
        return self.requests(path)

    def log_tail(self, lines: int = 60) -> str:
        return "\n\n".join(f"--- {p.name} ---\n{p.log_tail(lines)}" for p in self.processes)

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
