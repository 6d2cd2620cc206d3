"""The web service under real gunicorn, as it runs in production, on a free loopback port.

It starts ``gunicorn -c gunicorn.conf.py _wsgi:app`` with a clean environment (only what the caller passes, plus
PATH and PYTHONPATH), from an empty working directory so no developer ``.env``/``.env.local`` leaks in. Its log
goes to a file the caller can read after :meth:`stop`. Used by tests and by ``bench/``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from tests.redisserver import free_port

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def gunicorn_binary() -> str:
    found = BIN / "gunicorn"
    return str(found) if found.exists() else "gunicorn"


def rss_mb(pid: int) -> float:
    """Resident set size of a process, in MiB (from /proc, as ``ps`` reports it)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except FileNotFoundError:
        return []
    return [int(p) for p in text.split()]


class GunicornServer:
    def __init__(
        self,
        env: dict[str, str],
        *,
        workers: int = 1,
        threads: int = 8,
        args: tuple = (),
        workdir: Path | None = None,
    ) -> None:
        self.port = free_port()
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="gunicorn-test-"))
        self.log_path = self.dir / "server.log"
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": str(ROOT),
            "PORT": str(self.port),
            "WORKERS": str(workers),
            "THREADS": str(threads),
            "LOG_FORMAT": "json",
            **env,
        }
        self.args = args
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [gunicorn_binary(), "-c", str(ROOT / "gunicorn.conf.py"), *self.args, "_wsgi:app"]

    def start(self, timeout: float = 30.0) -> GunicornServer:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(self.command(), cwd=self.dir, env=self.env, stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=1) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"gunicorn did not answer /health within {timeout}s:\n{self.log()}")

    def workers(self) -> list[int]:
        return children(self.proc.pid) if self.proc else []

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> GunicornServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
