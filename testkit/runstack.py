"""The README's stack as one process tree: ``make run`` in its own session, with free ports and its own STACK_VAR.

``tests/test_readme_stack.py`` (the embedded model, a real Label Studio, Ctrl-C) and ``bench/soak.py`` (20 minutes of
faults) run the stack exactly as a user does: ``make run`` → ``scripts/run_stack.sh`` → Redis (a daemon, with its
append-only file under STACK_VAR), the LLM server when ``EMBEDDED_LLM=1``, the supervised RQ worker and gunicorn,
reading ``.env`` for everything the caller does not set. Only addresses change, so a run never meets another.

``make`` is called with ``-o .venv/.done``: the venv is taken as built (``make test`` builds it first; in a git
worktree whose ``.venv`` is shared, ``make`` would otherwise reinstall into it because the requirement files are
newer than the stamp).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from testkit.backendprocess import ROOT, settings_env_names
from testkit.redisserver import free_port

SCRIPT_ONLY = {"LLM_PORT", "STACK_VAR", "EMBEDDED_LLM"}  # read by scripts/run_stack.sh


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    sid: int
    cmdline: str

    def __str__(self) -> str:
        return f"{self.pid} {self.cmdline}"


def processes() -> list[Proc]:
    """Every live process (not zombies), from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if fields[0] == "Z":
                continue
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            found.append(Proc(int(stat.parent.name), int(fields[1]), int(fields[3]), cmdline))
        except (OSError, IndexError, ValueError):
            continue
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


class RunStack:
    def __init__(self, var: Path, env: dict[str, str] | None = None, log: Path | None = None) -> None:
        self.var = var
        self.ports = {"web": free_port(), "llm": free_port(), "redis": free_port()}
        self.url = f"http://127.0.0.1:{self.ports['web']}"
        self.redis_url = f"redis://127.0.0.1:{self.ports['redis']}/0"
        self.log = log or var.parent / "make-run.log"
        self.env = self._environment(env or {})
        self.make: subprocess.Popen | None = None

    def _environment(self, extra: dict[str, str]) -> dict[str, str]:
        """The caller's environment minus every backend setting, plus this stack's addresses; ``.env`` gives the
        rest, exactly as for a user."""
        drop = settings_env_names() | SCRIPT_ONLY
        return {
            **{k: v for k, v in os.environ.items() if k.upper() not in drop},
            "STACK_VAR": str(self.var),
            "PORT": str(self.ports["web"]),
            "LLM_PORT": str(self.ports["llm"]),
            "REDIS_URL": self.redis_url,
            **extra,
        }

    def start(self) -> RunStack:
        self.var.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.make = subprocess.Popen(
                ["make", "--no-print-directory", "-o", ".venv/.done", "run"],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group and session, like a job in a terminal
            )
        return self

    def output(self, chars: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def wait_healthy(self, timeout: float = 240) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.make.poll() is not None:
                raise RuntimeError(f"make run exited with {self.make.returncode}:\n{self.output()}")
            try:
                health = httpx.get(self.url + "/health", timeout=2).json()
                if health.get("status") == "UP":
                    return health
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.5)
        raise RuntimeError(f"make run's /health did not answer UP within {timeout:.0f} s:\n{self.output()}")

    # --- its processes ---------------------------------------------------------------------------------------------

    @property
    def redis_pidfile(self) -> Path:
        return self.var / "redis" / "redis.pid"

    def redis_pid(self) -> int | None:
        try:
            pid = int(self.redis_pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if alive(pid) else None

    def members(self) -> list[Proc]:
        """The live processes of the stack's session (everything but Redis, which daemonizes into its own)."""
        return [p for p in processes() if self.make is not None and p.sid == self.make.pid]

    def roles(self) -> dict[str, list[int]]:
        """The stack's processes by what they are: gunicorn master and workers, the RQ worker and its work horse,
        Redis, the LLM server."""
        members = self.members()
        by_pid = {p.pid: p for p in members}
        out: dict[str, list[int]] = {"gunicorn master": [], "gunicorn worker": [], "rq worker": [],
                                     "rq work horse": [], "llm server": [], "redis-server": []}  # fmt: skip
        for p in members:
            parent = by_pid.get(p.ppid)
            if "gunicorn" in p.cmdline:
                role = "gunicorn worker" if parent is not None and "gunicorn" in parent.cmdline else "gunicorn master"
                out[role].append(p.pid)
            elif "optimizer worker" in p.cmdline:
                horse = parent is not None and "optimizer worker" in parent.cmdline
                out["rq work horse" if horse else "rq worker"].append(p.pid)
            elif "llama_cpp.server" in p.cmdline:
                out["llm server"].append(p.pid)
        if (pid := self.redis_pid()) is not None:
            out["redis-server"].append(pid)
        return out

    def restart_redis(self, timeout: float = 30) -> float:
        """Stop Redis (SIGTERM: it writes its append-only file and exits) and start it again the way the stack did
        (``scripts/ensure_redis.sh``, same directory, same AOF). Returns the seconds it was down."""
        pid = self.redis_pid()
        if pid is None:
            raise RuntimeError("the stack's redis-server is not running")
        started = time.monotonic()
        os.kill(pid, signal.SIGTERM)
        while alive(pid) and time.monotonic() < started + timeout:
            time.sleep(0.05)
        subprocess.run([str(ROOT / "scripts" / "ensure_redis.sh")], cwd=ROOT, env=self.env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=timeout)  # fmt: skip
        return time.monotonic() - started

    # --- Ctrl-C ------------------------------------------------------------------------------------------------

    def interrupt(self, timeout: float = 60) -> int | None:
        """What a terminal does on Ctrl-C: SIGINT to every process of the foreground process group; make's status,
        or None if it has not exited within ``timeout``."""
        if self.make is None:
            return None
        if self.make.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.make.pid, signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.make.wait(timeout)
        return self.make.returncode

    def leftovers(self, grace: float = 30.0) -> list[str]:
        """What of the stack still runs ``grace`` seconds after Ctrl-C: processes of its session, and Redis (a
        daemon in a session of its own, found by its pid file)."""
        deadline = time.monotonic() + grace
        while True:
            left = [str(p) for p in self.members()]
            if (pid := self.redis_pid()) is not None:
                left.append(f"{pid} redis-server (pid file {self.redis_pidfile})")
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.2)

    def force_stop(self) -> None:
        """Kill whatever is left (a failed run's processes), so the next run meets a clean machine."""
        pids = [p.pid for p in self.members()] + [pid for pid in [self.redis_pid()] if pid is not None]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
