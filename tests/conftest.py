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
from tests.fakellm import FakeLLM  # noqa: E402
from tests.labelstudio import labelstudio, start_backend  # noqa: E402, F401  (real Label Studio + gunicorn fixtures)
from tests.redisserver import RedisServer  # noqa: E402

SUPPORT_CONFIG = """<View>
 <Paragraphs name="chat" value="$dialogue" layout="dialogue" />
 <Header value="User prompt:" />
 <View className="prompt"><TextArea name="prompt" toName="chat" rows="4" editable="true" /></View>
 <Header value="Bot answer:" />
 <TextArea name="response" toName="chat" rows="4" editable="true" />
 <Choices name="intent" toName="chat" choice="multiple">
   <Choice value="Greeting"/><Choice value="Account_Verification"/><Choice value="Technical_Support"/>
   <Choice value="Information_Request"/><Choice value="Billing"/><Choice value="Complaint"/>
   <Choice value="Feedback"/><Choice value="Cancellation"/><Choice value="Order_Status"/><Choice value="Other"/>
 </Choices>
</View>"""

REWARD_CONFIG = (
    '<View><Text name="input" value="$prompt"/><Text name="output" value="$response"/>'
    '<Choices name="reward" toName="output"><Choice value="1">Good</Choice><Choice value="0">Bad</Choice>'
    "</Choices></View>"
)

THREE_CONTROLS_CONFIG = """<View>
  <Text name="text" value="$text"/>
  <Choices name="topics" toName="text" choice="multiple">
    <Choice value="billing"/><Choice value="shipping"/><Choice value="returns"/>
  </Choices>
  <Choices name="sentiment" toName="text" choice="single">
    <Choice value="positive"/><Choice value="neutral"/><Choice value="negative"/>
  </Choices>
  <Choices name="urgency" toName="text" choice="single-radio">
    <Choice value="low"/><Choice value="high"/>
  </Choices>
</View>"""


def require_all() -> bool:
    """Under ``make test`` every component must be present: a missing one fails instead of skipping."""
    return os.environ.get("TEST_REQUIRE_ALL") == "1"


def need(condition: bool, reason: str) -> None:
    if condition:
        return
    if require_all():
        pytest.fail(f"required for the full suite: {reason}")
    pytest.skip(reason)


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
    from tests.embedded import EmbeddedLLM, find_server_python

    python = find_server_python()
    need(python is not None, "the embedded LLM venv (.venv-llm) is not built; run `make llm`")
    server = EmbeddedLLM(python).start()
    yield server
    server.stop()
