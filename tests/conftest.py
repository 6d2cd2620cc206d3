"""Shared fixtures: a real redis-server per session, a scripted OpenAI-compatible server per test, settings."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest
import redis

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from optimizer.settings import Settings  # noqa: E402
from tests.support.constants import REWARD_CONFIG, SUPPORT_CONFIG, THREE_CONTROLS_CONFIG  # noqa: E402, F401
from tests.support.fakellm import FakeLLM  # noqa: E402
from tests.support.gating import need, require_all  # noqa: E402, F401
from tests.support.labelstudio import labelstudio, start_backend  # noqa: E402, F401  (LS + gunicorn fixtures)
from tests.support.redisserver import RedisServer  # noqa: E402


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
    from tests.support.embedded import EmbeddedLLM, find_server_python

    python = find_server_python()
    need(python is not None, "the embedded LLM venv (.venv-llm) is not built; run `make llm`")
    server = EmbeddedLLM(python).start()
    yield server
    server.stop()


@pytest.fixture
def stack(make_settings, namespace):
    """``stack(tasks=None, web_workers=1, **settings) -> Stack``: backend, scripted LLM and LS, RQ workers on demand."""
    from optimizer.runtime.services import Services
    from tests.support.backendprocess import BackendProcess
    from tests.support.fakels import FakeLabelStudio
    from tests.support.training_stack import AUTH, Stack, gold_tasks, magic_responder, shared_env

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
