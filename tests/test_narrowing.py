"""Label-set narrowing: the candidates, the fallback, the version, and /predict sending exactly what training scores."""

import hashlib
import json

from _wsgi import create_app
from optimizer.labelstudio.labelconfig import parse_label_config
from optimizer.learning.candidates import demo_pool, demo_variants
from optimizer.learning.gold import GoldItem, synth_config
from optimizer.runtime.versions import policy_version
from optimizer.serving.narrowing import name_overlap, narrow, rank_labels
from optimizer.serving.policy import Demo, Policy
from optimizer.serving.prompting import build_messages
from optimizer.serving.retrieval import BM25
from testkit.fakellm import Reply, last_user, response_schema
from testkit.scripted import make_gold

LABELS = [f"intent_{i:02d}" for i in range(20)] + ["card_arrival", "lost_card"]
CONFIG = synth_config(LABELS, multiple=False)
SCHEMA = parse_label_config(CONFIG)
CONTROL = SCHEMA.choices[0]
# Items of intent_NN carry the words codeNNa / codeNNb / codeNNc, so BM25 neighbours share labels.
GOLD = [
    GoldItem(f"g{n}", f"request {n}: code{n % 20:02d}{'abc'[n % 3]} code{n % 20:02d}{'abc'[(n + 1) % 3]} please",
             {"label": [LABELS[n % 20]]})
    for n in range(60)
]  # fmt: skip
POOL = demo_pool(GOLD)


def test_neighbours_labels_come_first_and_names_count():
    ranked = rank_labels(CONTROL, POOL, BM25([d.input for d in POOL]), "need code03a code03b", 4)
    assert ranked[0] == "intent_03" and len(ranked) == 4 and len(set(ranked)) == 4
    # No neighbour at all, but the label's own words are in the input: it is a candidate, the rest is the prior.
    by_name = rank_labels(CONTROL, POOL, BM25([d.input for d in POOL]), "my card arrival is late", 3)
    assert by_name[0] == "card_arrival" and set(by_name) <= set(LABELS)
    overlap = name_overlap(CONTROL, "my card arrival is late")
    assert overlap["card_arrival"] > 0.5 > overlap["lost_card"] > 0  # "card" is in two names: weaker evidence


def test_no_evidence_falls_back_to_the_full_label_set():
    policy = Policy("x", POOL, demo_k=2, narrow_k=5)
    assert narrow(policy, SCHEMA, "zzz qqq") == {}
    assert rank_labels(CONTROL, POOL, BM25([d.input for d in POOL]), "zzz qqq", 5) is None


def test_small_controls_and_policies_without_narrowing_are_untouched():
    small = parse_label_config(synth_config(["a", "b", "c"], multiple=True))
    assert narrow(Policy("x", (Demo("a b", {"label": ["a"]}),), narrow_k=5), small, "a") == {}
    assert narrow(Policy("x", POOL, demo_k=2), SCHEMA, "intent_03word1") == {}


def test_version_covers_narrow_k_and_old_versions_stay():
    plain = Policy("x", POOL[:2], demo_k=1)
    legacy = {"instruction": "x", "demos": [d.to_dict() for d in POOL[:2]], "demo_k": 1}
    digest = hashlib.sha256(
        json.dumps(legacy, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()
    ).hexdigest()
    assert plain.version == "pv-" + digest[:12]
    narrowed = Policy("x", POOL[:2], demo_k=1, narrow_k=4)
    assert narrowed.version != plain.version != Policy("x", POOL[:2], demo_k=1, narrow_k=8).version
    assert Policy.from_json(narrowed.to_json()) == narrowed and Policy.from_json(narrowed.to_json()).narrow_k == 4


def test_candidates_come_after_the_shared_prefix():
    policy = Policy("Label it.", POOL, demo_k=2, narrow_k=4)
    a = build_messages(policy, SCHEMA, "code01a x", narrowed=narrow(policy, SCHEMA, "code01a x"))
    b = build_messages(policy, SCHEMA, "code07b y", narrowed=narrow(policy, SCHEMA, "code07b y"))
    assert a[0] == b[0]  # the system message (instruction, every label, format) is identical across items
    assert a[-1]["content"].startswith('code01a x\n\nCandidate labels for "label": intent_01')
    assert "Candidate labels" not in a[0]["content"]


def test_the_optimiser_proposes_narrowing_only_for_many_labels():
    variants = demo_variants(Policy("x"), SCHEMA, GOLD, demo_k=4, max_k=8, seed=0, narrow_k=8, narrow_min=16)
    kind, first = variants[0]
    assert kind == "narrow:k=8" and first.narrow_k == 8 and first.demo_k == 4
    again = dict(demo_variants(first, SCHEMA, GOLD, demo_k=4, max_k=8, seed=0, narrow_k=8, narrow_min=16))
    assert again["narrow:k=16"].narrow_k == 16 and again["narrow:k=4"].narrow_k == 4
    few = parse_label_config(synth_config(["a", "b", "c"], multiple=False))
    kinds = [k for k, _ in demo_variants(Policy("x"), few, make_gold(9, ["a", "b", "c"]), demo_k=4, max_k=8, seed=0,
                                         narrow_k=8, narrow_min=16)]  # fmt: skip
    assert not any(k.startswith("narrow") for k in kinds)


def test_predict_sends_the_narrowed_enum_that_training_scores(make_settings, fake_llm):
    """/predict with a narrowed live policy: the enum and the candidates line are exactly narrow()'s output."""

    def responder(body):
        enum = response_schema(body)["properties"]["label"]["enum"]
        return Reply(json.dumps({"label": enum[0]}))

    fake_llm.responder = responder
    app = create_app(make_settings())
    client = app.test_client()
    store = app.extensions["services"].store
    body = {"tasks": [{"id": 1, "data": {"text": "code05a code05c help"}}], "label_config": CONFIG}
    default = client.post("/predict", json={**body, "project": "3.1"}).get_json()["model_version"]
    assert len(response_schema(fake_llm.requests[-1])["properties"]["label"]["enum"]) == len(LABELS)
    policy = Policy("Label it.", POOL, demo_k=2, narrow_k=5)
    assert store.promote("3.1", policy, parent=policy_version(default)).ok
    result = client.post("/predict", json={**body, "project": "3.1"}).get_json()["results"][0]
    sent = fake_llm.requests[-1]
    expected = narrow(policy, SCHEMA, "code05a code05c help")["label"]
    assert response_schema(sent)["properties"]["label"]["enum"] == list(expected)
    assert last_user(sent).endswith('Candidate labels for "label": ' + ", ".join(expected))
    assert policy_version(result["model_version"]) == policy.version
    assert result["result"][0]["value"]["choices"] == ["intent_05"]
