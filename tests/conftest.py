"""Shared fixtures: a real redis-server per session, a scripted OpenAI-compatible server per test, settings."""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import pytest
import redis

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from optimizer.settings import Settings  # noqa: E402
from testkit.backendprocess import BackendProcess  # noqa: E402
from testkit.constants import REWARD_CONFIG, SUPPORT_CONFIG, THREE_CONTROLS_CONFIG  # noqa: E402, F401
from testkit.fakellm import FakeLLM  # noqa: E402
from testkit.labelstudio import LabelStudioServer, ls_venv  # noqa: E402
from testkit.redisserver import RedisServer  # noqa: E402
from tests.support.gating import need, require_all  # noqa: E402, F401


@pytest.fixture(scope="session")
def redis_server():
    server = RedisServer().start()
    yield server
    server.cleanup()


@pytest.fixture
def namespace() -> str:
    return "t" + uuid.uuid4().hex[:10]


@pytest.fixture
def redis_client(redis_server):
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def fake_llm():
    with FakeLLM() as fake:
        yield fake


@pytest.fixture
def make_settings(redis_server, fake_llm, namespace):
    def build(**overrides) -> Settings:
        values = {
            "redis_url": redis_server.url,
            "redis_namespace": namespace,
            "llm_base_url": fake_llm.base_url,
            "llm_model": "fake",
            "llm_max_retries": 2,
            "log_format": "text",
            "default_prompt": "Label the conversation.",
        }
        values.update(overrides)
        return Settings(_env_file=None, **values)

    return build


@pytest.fixture
def settings(make_settings):
    return make_settings()


@pytest.fixture
def app(settings):
    from _wsgi import create_app

    return create_app(settings)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="session")
def embedded_llm():
    """The real SmolLM2-135M behind llama.cpp's OpenAI-compatible server, started once per session."""
    from testkit.embedded import EmbeddedLLM, find_server_python

    python = find_server_python()
    need(python is not None, "the embedded LLM venv (.venv-llm) is not built; run `make llm`")
    server = EmbeddedLLM(python).start()
    yield server
    server.stop()


@pytest.fixture
def stack(make_settings, namespace):
    """``stack(tasks=None, web_workers=1, **settings) -> Stack``: backend, scripted LLM and LS, RQ workers on demand."""
    from optimizer.runtime.services import Services
    from testkit.backendprocess import BackendProcess
    from testkit.fakels import FakeLabelStudio
    from testkit.training_stack import AUTH, Stack, gold_tasks, magic_responder, shared_env

    stacks = []

    def build(tasks=None, web_workers: int = 1, **overrides) -> Stack:
        fake_llm = FakeLLM(magic_responder).start()
        ls = FakeLabelStudio(SUPPORT_CONFIG, tasks if tasks is not None else gold_tasks()).__enter__()
        values = {
            "llm_base_url": fake_llm.base_url,
            "rq_queue": namespace,
            "label_studio_url": ls.url,
            "label_studio_api_key": ls.token,
            "train_lease_ttl": 2.0,
            **overrides,
        }
        settings = make_settings(**values)
        backend = BackendProcess(
            redis_url=settings.redis_url,
            llm_base_url=fake_llm.base_url,
            namespace=settings.redis_namespace,
            basic_auth=AUTH,
            env=shared_env(settings),
            workers=web_workers,  # several web workers are the hot-swap and LLM-limit tests' subject
            threads=16,
        )
        s = Stack(settings, Services(settings), backend, ls, SUPPORT_CONFIG)
        s.llm = fake_llm
        stacks.append((s, ls, fake_llm))
        backend.start()
        return s

    yield build
    for s, ls, fake_llm in stacks:
        s.close()
        ls.__exit__()
        fake_llm.stop()


# --- a real Label Studio per session, and real gunicorn backends to connect to it ---------------------------------


@pytest.fixture(scope="session")
def labelstudio():
    if os.environ.get("E2E_LABEL_STUDIO_URL"):  # a server kept running between runs (python -m testkit.labelstudio)
        server = LabelStudioServer(os.environ["E2E_LABEL_STUDIO_URL"], os.environ["E2E_LABEL_STUDIO_TOKEN"])
        need(server.healthy(), f"E2E_LABEL_STUDIO_URL={server.url} is not answering /health")
    else:
        venv = ls_venv()
        need(venv is not None, "Label Studio is not installed: run scripts/install_labelstudio.sh or set LS_VENV")
        try:
            server = LabelStudioServer.launch(venv)
        except RuntimeError as exc:
            pytest.fail(str(exc))
        print(f"\nLabel Studio ready on {server.url} after {server.started_in:.1f} s")
    yield server
    server.stop()


@pytest.fixture
def start_backend(redis_server):
    """``start_backend(llm_base_url, **options) -> BackendProcess``, healthy; everything stops after the test.

    Options: ``basic_auth=(user, pass)``, ``webhook_secret``, ``workers`` (2), ``threads`` (4), ``env`` (extra
    variables, e.g. ``LABEL_STUDIO_URL``), ``namespace`` (default: unique per backend), ``redis_url``, ``app``.
    """
    started: list[BackendProcess] = []

    def start(llm_base_url: str, **options) -> BackendProcess:
        options.setdefault("redis_url", redis_server.url)
        options.setdefault("namespace", "e2e" + uuid.uuid4().hex[:10])
        backend = BackendProcess(llm_base_url=llm_base_url, **options)
        started.append(backend)
        return backend.start()

    yield start
    for backend in started:
        backend.cleanup()
