"""Per-project LLM profiles against a real Label Studio 1.23.2: one backend, two projects, two endpoints.

The backend's ``LLM_PROFILES`` names a second scripted OpenAI-compatible server. Project A connects with empty Extra
params, project B with ``{"profile": "strong", "model": ...}`` typed into Label Studio's Connect Model dialog. After
Retrieve Predictions in each, every labelling request project A caused reached the default endpoint and every one of
project B's reached the profile's endpoint with the model B chose (the scripted servers record the model name and
the task text). Extra params pointing the backend at a URL of its own, or carrying a key, are refused when the model
is connected, and Label Studio reports the failure.
"""

from __future__ import annotations

import json

import pytest
from label_studio_sdk.core.api_error import ApiError

from testkit.constants import THREE_CONTROLS_CONFIG
from testkit.fakellm import FakeLLM, keyword_responder, last_user

pytestmark = [pytest.mark.labelstudio, pytest.mark.slow]

SECRET = "sk-strong-profile-secret-42"
A_TEXTS = ["alpha: a billing question", "alpha: shipping is late"]
B_TEXTS = ["bravo: returns please", "bravo: billing again", "bravo: a positive note"]


def test_two_projects_two_profiles_each_predict_reaches_its_own_endpoint(labelstudio, start_backend, fake_llm):
    with FakeLLM(keyword_responder) as strong:
        profiles = {"strong": {"base_url": strong.base_url, "model": "strong-model", "api_key": SECRET}}
        backend = start_backend(fake_llm.base_url, env={"LLM_PROFILES": json.dumps(profiles)})

        project_a, tasks_a = labelstudio.create_project(THREE_CONTROLS_CONFIG, [{"text": t} for t in A_TEXTS])
        project_b, tasks_b = labelstudio.create_project(THREE_CONTROLS_CONFIG, [{"text": t} for t in B_TEXTS])
        labelstudio.connect_backend(project_a.id, backend.url)
        ml_b = labelstudio.connect_backend(
            project_b.id, backend.url, extra_params={"profile": "strong", "model": "strong-mini", "temperature": 0.1}
        )
        assert labelstudio.ml_backend(ml_b.id)["state"] == "CO"

        assert labelstudio.retrieve_predictions(project_a.id)["processed_items"] == len(A_TEXTS)
        assert labelstudio.retrieve_predictions(project_b.id)["processed_items"] == len(B_TEXTS)

        asked_default = [last_user(body) for body in fake_llm.requests]
        asked_strong = [last_user(body) for body in strong.requests]
        assert sorted(asked_default) == sorted(A_TEXTS), backend.log_tail()
        assert sorted(asked_strong) == sorted(B_TEXTS), backend.log_tail()
        (default_model,) = {b["model"] for b in fake_llm.requests}  # the LLM_MODEL of the backend's environment
        assert not default_model.startswith("strong")
        assert {b["model"] for b in strong.requests} == {"strong-mini"}
        assert {b["temperature"] for b in strong.requests} == {0.1}
        # Both projects hold their predictions, read back through the SDK.
        for task_id in tasks_a + tasks_b:
            (prediction,) = labelstudio.predictions(task_id)
            assert prediction["result"], task_id

        # Refused at connect time: a URL that is no profile's (SSRF), a key typed into Label Studio, a made-up profile.
        for extra in ({"base_url": "http://169.254.169.254/latest/"}, {"profile": "strong", "api_key": "sk-x"},
                      {"profile": "gpt-9"}):  # fmt: skip
            project_c, _ = labelstudio.create_project(THREE_CONTROLS_CONFIG, [{"text": "charlie"}])
            before = len(backend.requests("/setup"))
            with pytest.raises(ApiError) as refused:
                labelstudio.connect_backend(project_c.id, backend.url, extra_params=extra)
            assert refused.value.status_code == 400, extra
            statuses = [a.status for a in backend.requests("/setup")[before:]]
            assert statuses and set(statuses) == {400}, (extra, statuses)
        assert len(strong.requests) == len(B_TEXTS) and all("charlie" not in t for t in asked_default + asked_strong)
        assert SECRET not in backend.log_tail(400)
