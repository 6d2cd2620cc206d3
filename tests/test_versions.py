"""The ``model_version`` Label Studio sees follows the policy, the label config's contract and the answering model.

Label Studio re-predicts by that string alone, so each of the three must change it, ``/setup`` and ``/predict``
must agree on it, a cosmetic config edit must not change it (or every task would be predicted again for nothing),
and the policy history must still say which policy a served version was.
"""

from __future__ import annotations

import pytest

from _wsgi import create_app
from optimizer.labelstudio.labelconfig import parse_label_config
from optimizer.runtime.versions import ServedVersion, policy_version
from optimizer.serving.policy import Policy
from testkit.constants import THREE_CONTROLS_CONFIG
from testkit.fakellm import FakeLLM

PROJECT = "21.1795300590"
WITH_LABEL = THREE_CONTROLS_CONFIG.replace('<Choice value="returns"/>', '<Choice value="returns"/><Choice value="x"/>')
MULTIPLE = THREE_CONTROLS_CONFIG.replace('name="sentiment" toName="text" choice="single"',
                                         'name="sentiment" toName="text" choice="multiple"')  # fmt: skip
COSMETIC = THREE_CONTROLS_CONFIG.replace("<View>", '<View style="padding: 4px"><Header value="Read this first"/>', 1)


@pytest.fixture
def strong():
    with FakeLLM() as server:
        yield server


@pytest.fixture
def client(make_settings, strong):
    profiles = {"strong": {"base_url": strong.base_url, "model": "strong-model"}}
    return create_app(make_settings(llm_profiles=profiles)).test_client()


def setup(client, config=THREE_CONTROLS_CONFIG, extra=None, project=PROJECT) -> str:
    body = {"project": project, "schema": config, **({"extra_params": extra} if extra is not None else {})}
    answer = client.post("/setup", json=body)
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()["model_version"]


def predict(client, config=THREE_CONTROLS_CONFIG) -> dict:
    body = {"tasks": [{"id": 1, "data": {"text": "billing"}}], "label_config": config, "project": PROJECT}
    answer = client.post("/predict", json=body)
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()


def test_setup_and_predict_agree_and_the_version_names_its_policy(client):
    version = setup(client)
    answer = predict(client)
    assert answer["model_version"] == version and answer["results"][0]["model_version"] == version
    parsed = ServedVersion.parse(version)
    assert parsed is not None and str(parsed) == version and policy_version(version) == parsed.policy
    assert parsed.policy.startswith("pv-") and parsed.config == parse_label_config(THREE_CONTROLS_CONFIG).fingerprint


def test_the_answered_part_of_the_config_changes_the_version_and_layout_does_not(client):
    base = setup(client)
    assert setup(client, COSMETIC) == base  # a header and a style: nothing the backend answers changed
    added, multiple = setup(client, WITH_LABEL), setup(client, MULTIPLE)
    assert len({base, added, multiple}) == 3
    assert {policy_version(v) for v in (base, added, multiple)} == {policy_version(base)}
    assert predict(client, WITH_LABEL)["model_version"] == added
    assert setup(client) == base  # back to the old config: the old version, so nothing is predicted twice


def test_switching_the_profile_or_the_model_changes_the_version(client, strong):
    base = setup(client)
    on_strong = setup(client, extra={"profile": "strong"})
    other_model = setup(client, extra={"profile": "strong", "model": "strong-mini"})
    assert len({base, on_strong, other_model}) == 3
    assert ServedVersion.parse(on_strong).config == ServedVersion.parse(base).config
    assert predict(client)["model_version"] == other_model and strong.requests[-1]["model"] == "strong-mini"
    assert setup(client, extra={}) == base  # Extra params emptied: the defaults, and the first version again


def test_a_new_policy_changes_the_version_and_history_says_which_policy_each_served(client):
    base = setup(client)
    services = client.application.extensions["services"]
    better = Policy("A better instruction.")
    assert services.store.promote(PROJECT, better, parent=policy_version(base)).ok
    promoted = setup(client)
    assert promoted != base and policy_version(promoted) == better.version
    assert ServedVersion.parse(promoted).config == ServedVersion.parse(base).config
    listing = client.get(f"/projects/{PROJECT}/policies").get_json()
    assert (
        listing["served"][promoted]["policy"] == better.version and listing["served"][base]["policy"] != better.version
    )
    by_version = {p["version"]: p for p in listing["policies"]}
    assert (
        by_version[better.version]["served_as"] == [promoted] and base in by_version[policy_version(base)]["served_as"]
    )
    shown = client.get(f"/projects/{PROJECT}/policies/{promoted}").get_json()
    assert shown["version"] == better.version and shown["served"]["version"] == promoted
    assert shown["served"]["labels"] == {"topics": 3, "sentiment": 3, "urgency": 2}
    versions = client.get(f"/versions?project={PROJECT}").get_json()
    assert versions["model_version"] == promoted and versions["versions"][0] == promoted
    assert [policy_version(v) for v in versions["versions"]] == [better.version, policy_version(base)]


def test_an_interactive_prompt_is_served_under_its_own_version(client):
    base = setup(client)
    context = {"result": [{"from_name": "prompt", "type": "textarea", "value": {"text": ["Only billing."]}}]}
    config = THREE_CONTROLS_CONFIG.replace("</View>", '<TextArea name="prompt" toName="text"/></View>')
    typed = client.post("/predict", json={"tasks": [{"id": 1, "data": {"text": "billing"}}], "label_config": config,
                                          "project": PROJECT, "params": {"context": context}}).get_json()  # fmt: skip
    version = typed["results"][0]["model_version"]
    assert version != base and policy_version(version) == Policy("Only billing.").version
    assert ServedVersion.parse(version).config == parse_label_config(config).fingerprint
