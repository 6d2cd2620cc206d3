"""The real embedded model (llama.cpp server + SmolLM2-135M from .venv-llm) on a free loopback port.

One server per test session, shared by every smoke test. ``find_server_python`` returns None when the LLM venv is
not built, and the fixture then skips (or fails under ``make test``).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from testkit.redisserver import free_port

ROOT = Path(__file__).resolve().parents[1]


def find_server_python() -> Path | None:
    venv = Path(os.environ.get("LLM_VENV") or ROOT / ".venv-llm")
    python = venv / "bin" / "python"
    return python if python.exists() else None


class EmbeddedLLM:
    def __init__(
        self, python: Path, port: int | None = None, args: Sequence[str] = (), log: Path | None = None
    ) -> None:
        """``args``: more llama_cpp.server options (e.g. thread counts); ``log``: where its output goes."""
        self.python = python
        self.port = port or free_port()
        self.args = list(args)
        self.proc: subprocess.Popen | None = None
        self.log = log or Path(tempfile.mkstemp(prefix="llm-", suffix=".log")[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout: float = 120.0) -> EmbeddedLLM:
        # The venv is the one find_server_python chose; the script clears every other variable (see its header).
        env = {**os.environ, "LLM_VENV": str(self.python.parent.parent)}
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [str(ROOT / "scripts" / "llm_server.sh"), str(self.port), *self.args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama.cpp server exited: {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.base_url + "/models", timeout=1):
                    return self
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError("llama.cpp server did not become ready")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc = None
