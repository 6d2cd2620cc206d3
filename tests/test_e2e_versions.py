"""A project's life against a real Label Studio 1.23.2: the version follows the label config and the model.

Label Studio re-predicts by ``model_version`` alone, so a label added to the config, or a project switched to
another profile in Extra params, must change the version ``/setup`` reports. Then one Retrieve Predictions gives
every task a new prediction under the new version (the new label predicted where it applies), and no task is left
with an empty or a duplicated prediction: read back through the SDK.
"""

from __future__ import annotations

import json
from collections import Counter

import httpx
import pytest

from optimizer.runtime.versions import ServedVersion, policy_version
from testkit.fakellm import FakeLLM, keyword_responder, last_user

pytestmark = [pytest.mark.labelstudio, pytest.mark.slow]

CONFIG = """<View>
  <Text name="text" value="$text"/>
  <Choices name="topics" toName="text" choice="multiple">
    <Choice value="billing"/><Choice value="shipping"/><Choice value="returns"/>
  </Choices>
</View>"""
WITH_WARRANTY = CONFIG.replace('<Choice value="returns"/>', '<Choice value="returns"/><Choice value="warranty"/>')
TEXTS = ["billing twice this month", "shipping is late", "a warranty claim for my returns", "warranty again"]


def _versions(predictions: list[dict]) -> Counter:
    return Counter(p["model_version"] for p in predictions)


def test_a_label_added_then_a_profile_switched_each_repredict_every_task_once(labelstudio, start_backend, fake_llm):
    with FakeLLM(keyword_responder) as strong:
        profiles = {"strong": {"base_url": strong.base_url, "model": "strong-model"}}
        backend = start_backend(fake_llm.base_url, env={"LLM_PROFILES": json.dumps(profiles)})
        project, task_ids = labelstudio.create_project(CONFIG, [{"text": t} for t in TEXTS])
        ml = labelstudio.connect_backend(project.id, backend.url)

        v1, first = labelstudio.retrieve_all(project.id, ml.id, task_ids)
        assert all(_versions(p) == {v1: 1} and p[0]["result"] for p in first), first

        # Settings → Labeling Interface: a label added. The version changes; the policy does not.
        labelstudio.client.projects.update(id=project.id, label_config=WITH_WARRANTY)
        v2, second = labelstudio.retrieve_all(project.id, ml.id, task_ids)
        assert v2 != v1 and policy_version(v2) == policy_version(v1)
        assert ServedVersion.parse(v2).model == ServedVersion.parse(v1).model  # same model, another config
        assert all(_versions(p) == {v1: 1, v2: 1} for p in second), second  # one new prediction each, none twice
        newest = {
            t: next(p for p in preds if p["model_version"] == v2) for t, preds in zip(task_ids, second, strict=True)
        }
        chosen = {t: newest[t]["result"][0]["value"]["choices"] for t in task_ids}
        assert chosen[task_ids[2]] == ["returns", "warranty"] and chosen[task_ids[3]] == ["warranty"], chosen
        assert not strong.requests

        # Settings → Model → Extra params: the project switches to the "strong" profile.
        # (Label Studio 1.23.2 answers 500 to a PATCH without url and project: it checks the backend they name,
        # so send what its Edit Model form sends.)
        labelstudio.client.ml.update(id=ml.id, url=backend.url, project=project.id, title="prompt-policy",
                                     is_interactive=True, extra_params={"profile": "strong"})  # fmt: skip
        v3, third = labelstudio.retrieve_all(project.id, ml.id, task_ids)
        assert v3 not in (v1, v2) and policy_version(v3) == policy_version(v1)
        assert ServedVersion.parse(v3).config == ServedVersion.parse(v2).config  # same config, another model
        assert all(_versions(p) == {v1: 1, v2: 1, v3: 1} for p in third), third
        assert all(p["result"] for preds in third for p in preds)  # nothing stored empty
        assert sorted(last_user(body) for body in strong.requests) == sorted(TEXTS)

        # A Retrieve Predictions with nothing changed asks for nothing and stores nothing more.
        asked = len(strong.requests)
        v4, fourth = labelstudio.retrieve_all(project.id, ml.id, task_ids)
        assert v4 == v3 and len(strong.requests) == asked and fourth == third

        # The policy history says which policy each served version was made of.
        listing = httpx.get(f"{backend.url}/projects/{project.id}/policies", headers=backend.auth_header).json()
        served = listing["served"]
        assert {v1, v2, v3} <= set(served) and {served[v]["policy"] for v in (v1, v2, v3)} == {policy_version(v1)}
        assert served[v3]["profile"] == "strong" and served[v3]["model_name"] == "strong-model"
        live = next(p for p in listing["policies"] if p["live"])
        assert {v1, v2, v3} <= set(live["served_as"])
