"""Every kind of bad setting stops start-up with one line naming the variable, and never echoes a secret."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from optimizer.settings import Settings, load_settings
from testkit.backendprocess import ROOT
from tests.support.gating import need

# (kind, environment, variable the one line must name, words the message must contain)
BAD = [
    ("not-a-number", {"PORT": "abc"}, "PORT", "valid integer"),
    ("out-of-range", {"WORKERS": "0"}, "WORKERS", "greater than or equal to 1"),
    ("negative-float", {"LLM_TIMEOUT": "-1"}, "LLM_TIMEOUT", "greater than 0"),
    ("unknown-choice", {"LLM_PROVIDER": "foo"}, "LLM_PROVIDER", "'openai'"),
    ("not-a-boolean", {"EMBEDDED_LLM": "maybe"}, "EMBEDDED_LLM", "valid boolean"),
    ("malformed-redis-url", {"REDIS_URL": "http://localhost:6379"}, "REDIS_URL", "redis://host:port/db"),
    ("redis-url-bad-port", {"REDIS_URL": "redis://localhost:po/0"}, "REDIS_URL", "Port could not be cast"),
    ("malformed-http-url", {"LLM_BASE_URL": "ftp://example.org/v1"}, "LLM_BASE_URL", "http(s)://"),
    ("alias-named-as-set", {"OPENAI_BASE_URL": "localhost:8081"}, "OPENAI_BASE_URL", "http(s)://"),
    ("missing-prompt-file", {"DEFAULT_PROMPT": "@prompts/nope.txt"}, "DEFAULT_PROMPT", "not found"),
    ("bad-pattern", {"RQ_QUEUE": "my queue"}, "RQ_QUEUE", "should match pattern"),
    ("incomplete-pair", {"BASIC_AUTH_USER": "admin"}, "BASIC_AUTH_PASS", "set together"),
]


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No settings from the developer's environment or .env files: only what each test sets."""
    for name in list(os.environ):
        if name.upper() in {n.upper() for n in Settings.model_fields} or name.startswith(("LLM_", "OPENAI_")):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


@pytest.mark.parametrize(("kind", "env", "variable", "words"), BAD, ids=[b[0] for b in BAD])
def test_bad_value_stops_with_one_line_naming_the_setting(clean_env, capsys, kind, env, variable, words):
    for name, value in env.items():
        clean_env.setenv(name, value)
    with pytest.raises(SystemExit) as stopped:
        load_settings()
    assert stopped.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"configuration error: {variable}: "), lines[0]
    assert words in lines[0]


def test_defaults_are_valid(clean_env):
    settings = load_settings()
    assert settings.port == 9090 and settings.rq_queue == "lsml-train"


def test_error_line_never_echoes_a_secret_or_url_password(clean_env, capsys):
    clean_env.setenv("BASIC_AUTH_PASS", "hunter2-very-secret")  # without a user: invalid
    clean_env.setenv("REDIS_URL", "redis://:redis-pw-123@host:bad/0")
    with pytest.raises(SystemExit):
        load_settings()
    err = capsys.readouterr().err
    assert "BASIC_AUTH_PASS" in err and "REDIS_URL" in err
    assert "hunter2-very-secret" not in err and "redis-pw-123" not in err


def test_gunicorn_stops_in_the_master_with_one_line(tmp_path):
    """A worker failing at import would be respawned forever; gunicorn.conf.py checks before forking."""
    env = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": str(ROOT),
        "REDIS_URL": "redis://127.0.0.1:1/0",
        "LLM_PROVIDER": "gpt",
    }
    argv = [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"), "_wsgi:app"]
    proc = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "configuration error: LLM_PROVIDER: Input should be 'auto', 'openai', 'azure', 'ollama', 'vllm' or 'llamacpp'"
    ]


def test_cli_stops_with_one_line(tmp_path):
    """``python -m optimizer ...`` (h1/h3's CLI) must go through ``optimizer.runtime.startup.start`` too."""
    need((ROOT / "optimizer" / "__main__.py").exists(), "optimizer/__main__.py (the CLI) is missing")
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), "PORT": "not-a-port"}
    proc = subprocess.run(
        [sys.executable, "-m", "optimizer", "worker"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("configuration error: PORT: "), lines
