"""Real processes for the retraining tests: the RQ worker (``python -m optimizer worker``) and a gunicorn web service.

Both run from the worktree root with settings passed as environment variables (as in production), each in its own
process group so a test can SIGKILL a worker together with its work horse, the way a machine or container dies.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from tests.redisserver import free_port

ROOT = Path(__file__).resolve().parent.parent


def settings_env(settings, **extra) -> dict:
    """Environment variables that reproduce ``settings`` (only what the processes read) plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLM_", "OPENAI_", "LABEL_STUDIO_", "REDIS_"))}
    values = {
        "REDIS_URL": settings.redis_url,
        "REDIS_NAMESPACE": settings.redis_namespace,
        "LLM_BASE_URL": settings.llm_base_url,
        "LLM_MODEL": settings.llm_model,
        "LLM_PROVIDER": settings.llm_provider,
        "LLM_MAX_RETRIES": str(settings.llm_max_retries),
        "LOG_FORMAT": "text",
        "DEFAULT_PROMPT": settings.default_prompt,
        "RQ_QUEUE": settings.rq_queue,
        "TRAIN_LEASE_TTL": str(settings.train_lease_ttl),
        "TRAIN_MIN_GOLD": str(settings.train_min_gold),
        "OPTIMIZE_BUDGET": str(settings.optimize_budget),
        "RETRAIN_EVERY_N": str(settings.retrain_every_n),
        "REPREDICT_AFTER_PROMOTE": "1" if settings.repredict_after_promote else "0",
        "LABEL_STUDIO_URL": settings.label_studio_url,
        "LABEL_STUDIO_API_KEY": settings.label_studio_api_key.get_secret_value(),
        "BASIC_AUTH_USER": settings.basic_auth_user,
        "BASIC_AUTH_PASS": settings.basic_auth_pass.get_secret_value(),
        "PYTHONUNBUFFERED": "1",
    }
    env.update(values)
    env.update(extra)
    return env


class Proc:
    def __init__(self, args: list[str], env: dict, log: Path) -> None:
        self.log = log
        self._out = log.open("wb")
        self.proc = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=self._out, stderr=subprocess.STDOUT, start_new_session=True
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group (the worker and its work horse; gunicorn and its workers)."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def kill_tree(self) -> None:
        """SIGKILL the process and every descendant (RQ's work horse runs in its own process group)."""
        victims = [self.proc.pid, *descendants(self.proc.pid)]
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait(10)

    def children(self) -> list[int]:
        return descendants(self.proc.pid)

    def stop(self) -> None:
        self.kill(signal.SIGTERM)
        self._out.close()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (read from /proc; Linux only, like the rest of the stack)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def start_worker(settings, log_dir: Path, name: str = "worker", **extra) -> Proc:
    env = settings_env(settings, **extra)
    return Proc([sys.executable, "-m", "optimizer", "worker"], env, log_dir / f"{name}.log")


def start_gunicorn(settings, log_dir: Path, *, workers: int = 4, app: str = "_wsgi:app", **extra) -> tuple[Proc, str]:
    port = free_port()
    env = settings_env(settings, **extra)
    args = [
        sys.executable,
        "-m",
        "gunicorn",
        app,
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--threads",
        "4",
        "--worker-class",
        "gthread",
        "--timeout",
        "60",
    ]
    proc = Proc(args, env, log_dir / "gunicorn.log")
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if requests.get(url + "/health", timeout=1).ok:
                return proc, url
        except requests.RequestException:
            pass
        if not proc.alive():
            break
        time.sleep(0.1)
    proc.stop()
    raise RuntimeError(f"gunicorn did not start:\n{proc.output()[-3000:]}")


def wait_for(predicate, timeout: float, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
