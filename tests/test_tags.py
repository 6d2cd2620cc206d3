"""The tag families beyond Choices/TextArea: config → JSON schema → strict parsing → Label Studio results → gold.

Every assertion is about what a user ends up with: spans whose ``text`` is exactly the task text at their offsets,
values that never leave the tag's domain, and gold read back from annotations as the verifier scores it.
"""

from __future__ import annotations

import json

import pytest

from optimizer.labelstudio.labelconfig import LabelConfigError, parse_label_config
from optimizer.labelstudio.results import answer_from_result, to_results
from optimizer.labelstudio.tags.spans import locate
from optimizer.learning.gold import GoldError, items_from_tasks, load_gold
from optimizer.learning.verifiers import combine, named, verifier_for
from optimizer.serving.parsing import parse_answer
from optimizer.serving.prompting import answer_json, format_spec, json_schema
from testkit.constants import NER_CONFIG, NUMBER_CONFIG, PAIRWISE_CONFIG, RATING_CONFIG, TAXONOMY_CONFIG
from testkit.fakellm import response_schema
from testkit.tagllm import tag_responder

NER = parse_label_config(NER_CONFIG)
NUMBER = parse_label_config(NUMBER_CONFIG)
RATING = parse_label_config(RATING_CONFIG)
TAXONOMY = parse_label_config(TAXONOMY_CONFIG)
PAIRWISE = parse_label_config(PAIRWISE_CONFIG)


def spans_of(text: str, answer: dict) -> list[dict]:
    parsed = parse_answer(NER, json.dumps(answer, ensure_ascii=False))
    return to_results(NER, {}, {}, {"ner": 0.9}, values=parsed.values, data={"text": text})


# --- spans -----------------------------------------------------------------------------------------------------------


def test_every_occurrence_is_labelled_and_each_span_text_is_the_task_text_at_its_offsets():
    text = "Paris is big. I love paris, and Parisians love Paris."
    items = spans_of(text, {"ner": [{"text": "Paris", "label": "LOC"}]})
    assert [(i["value"]["start"], i["value"]["end"]) for i in items] == [(0, 5), (47, 52)]  # not "Parisians"
    for item in items:
        value = item["value"]
        assert value["text"] == text[value["start"] : value["end"]] == "Paris"
        assert (item["type"], item["from_name"], item["to_name"], value["labels"]) == ("labels", "ner", "text", ["LOC"])
    assert len({i["id"] for i in items}) == 2


def test_case_fallback_word_boundaries_and_whitespace_runs():
    assert locate("Al met Albert and AL.", "Al") == [(0, 2)]  # exact first; "Albert" and "AL" are not it
    assert locate("we met albert", "Albert") == [(7, 13)]  # no exact hit: case ignored
    assert locate("the Bank of\n  England said", "Bank of England") == [(4, 21)]
    assert locate("C++ and C++", "C++") == [(0, 3), (8, 11)]  # punctuation ends need no word boundary
    assert locate("nothing here", "Paris") == []


def test_unicode_html_and_overlapping_spans():
    text = "Zoë Ünal 🚀 visited 東京 & <b>São Paulo</b> with New York Times staff in New York."
    answer = {
        "ner": [
            {"text": "Zoë Ünal", "label": "PER"},
            {"text": "東京", "label": "LOC"},
            {"text": "São Paulo", "label": "LOC"},
            {"text": "New York Times", "label": "ORG"},
            {"text": "New York", "label": "LOC"},
            {"text": "Atlantis", "label": "LOC"},  # not in the text: no span, never an approximate one
        ]
    }
    items = spans_of(text, answer)
    got = {(i["value"]["text"], i["value"]["labels"][0]) for i in items}
    assert got == {
        ("Zoë Ünal", "PER"),
        ("東京", "LOC"),
        ("São Paulo", "LOC"),
        ("New York Times", "ORG"),
        ("New York", "LOC"),
    }
    assert all(i["value"]["text"] == text[i["value"]["start"] : i["value"]["end"]] for i in items)
    new_york = sorted((i["value"]["start"], i["value"]["end"]) for i in items if i["value"]["text"] == "New York")
    assert len(new_york) == 2  # inside the ORG span (overlap kept) and on its own


def test_span_parsing_never_returns_a_label_outside_the_set():
    raw = json.dumps({"ner": [{"text": "Ada", "label": "per"}, {"text": "Bob", "label": "ANIMAL"}, {"text": " "}]})
    parsed = parse_answer(NER, raw)
    assert parsed.values["ner"] == [{"text": "Ada", "label": "PER"}]
    assert parsed.dropped == 2
    # A {label: [texts]} object instead of the list we asked for is read too, still only with known labels.
    parsed = parse_answer(NER, json.dumps({"ner": {"ORG": ["Acme"], "FOOD": ["pie"]}}))
    assert parsed.values["ner"] == [{"text": "Acme", "label": "ORG"}]


def test_json_schema_and_spec_constrain_each_tag():
    ner = json_schema(NER)["properties"]["ner"]
    assert ner["items"]["properties"]["label"]["enum"] == ["PER", "ORG", "LOC"] and ner["maxItems"] > 0
    assert json_schema(NUMBER)["properties"]["amount"] == {"type": "number", "minimum": 0, "maximum": 100}
    assert json_schema(RATING)["properties"]["stars"]["enum"] == [1, 2, 3, 4, 5]
    topic = json_schema(TAXONOMY)["properties"]["topic"]["items"]["enum"]
    assert topic == ["Animal", "Animal > Cat", "Animal > Dog", "Plant", "Plant > Tree"]
    assert json_schema(PAIRWISE)["properties"]["pw"]["enum"] == ["left", "right"]
    assert '"left" if [first]' in format_spec(PAIRWISE) and "from 0 to 100" in format_spec(NUMBER)


@pytest.mark.parametrize(
    ("schema", "raw", "expected", "dropped"),
    [
        (NUMBER, '{"amount": 42.5}', 42.5, 0),
        (NUMBER, '{"amount": "7"}', 7, 0),
        (NUMBER, '{"amount": 250}', None, 1),  # outside max: dropped, not clamped
        (NUMBER, "amount: -1", None, 1),
        (RATING, '{"stars": 4}', 4, 0),
        (RATING, '{"stars": 4.0}', 4, 0),
        (RATING, '{"stars": 3.5}', None, 1),
        (RATING, '{"stars": 0}', None, 1),
        (RATING, "5", 5, 0),  # a bare answer for a one-control config
        (TAXONOMY, '{"topic": ["Animal > Cat", "plant/tree", "Fungi"]}', [["Animal", "Cat"], ["Plant", "Tree"]], 1),
        (TAXONOMY, '{"topic": ["Dog"]}', [["Animal", "Dog"]], 0),  # a unique node name finds its path
        (TAXONOMY, '{"topic": [["Animal", "Cat"]]}', [["Animal", "Cat"]], 0),
        (PAIRWISE, '{"pw": "Right"}', "right", 0),
        (PAIRWISE, '{"pw": "second"}', "right", 0),  # the object's name
        (PAIRWISE, '{"pw": "both"}', None, 1),
    ],
)
def test_parsing_keeps_values_inside_the_tag_domain(schema, raw, expected, dropped):
    parsed = parse_answer(schema, raw)
    assert parsed.values.get(schema.tags[0].name) == expected
    assert parsed.dropped == dropped


def test_results_in_label_studio_shapes_and_back_to_gold():
    cases = [
        (NUMBER, 42, {"number": 42}),
        (RATING, 4, {"rating": 4}),
        (TAXONOMY, [["Animal", "Cat"]], {"taxonomy": [["Animal", "Cat"]]}),
        (PAIRWISE, "left", {"selected": "left"}),
    ]
    for schema, value, shape in cases:
        tag = schema.tags[0]
        (item,) = to_results(schema, {}, {}, {tag.name: 0.5}, values={tag.name: value}, data={})
        assert item["value"] == shape and item["type"] == tag.result_type and item["score"] == 0.5
        assert answer_from_result(schema, [item]) == {tag.name: value}
    (pw,) = to_results(PAIRWISE, {}, {}, {}, values={"pw": "left"})
    assert pw["from_name"] == pw["to_name"] == "pw"


def test_span_gold_reads_the_text_at_the_offsets_and_round_trips_through_demos():
    text = "Ada Lovelace met Charles Babbage in London."
    result = [
        {"from_name": "ner", "to_name": "text", "type": "labels",
         "value": {"start": 0, "end": 12, "text": "stale text", "labels": ["PER"]}},
        {"from_name": "ner", "to_name": "text", "type": "labels",
         "value": {"start": 36, "end": 42, "text": "London", "labels": ["LOC", "FOOD"]}},
    ]  # fmt: skip
    gold = answer_from_result(NER, result, {"text": text})
    assert [(g["text"], g["label"]) for g in gold["ner"]] == [("Ada Lovelace", "PER"), ("London", "LOC")]
    demo = json.loads(answer_json(NER, gold))
    assert demo == {"ner": [{"text": "Ada Lovelace", "label": "PER"}, {"text": "London", "label": "LOC"}]}
    items, skipped = items_from_tasks(NER, [{"id": 1, "data": {"text": text}, "annotations": [{"result": result}]}])
    assert len(items) == 1 and not skipped and items[0].input == text
    assert combine(NER, parse_answer(NER, json.dumps(demo)).values, items[0].answer).reward == 1.0


# --- verifiers -------------------------------------------------------------------------------------------------------


def test_span_f1_exact_partial_and_per_label():
    verify = verifier_for(NER, "ner")
    gold = [{"text": "the Bank of England", "label": "ORG"}, {"text": "London", "label": "LOC"}]
    assert verify(gold, gold).reward == 1.0
    assert verify([], []).reward == 1.0
    assert verify([], gold).reward == 0.0
    partial = verify([{"text": "Bank of England", "label": "ORG"}, {"text": "London", "label": "LOC"}], gold)
    # Credit 1 (London) + 6/7 (token F1 of 3 vs 4 tokens) over 2 predicted and 2 gold.
    assert partial.reward == pytest.approx((1 + 6 / 7) / 2)
    assert partial.feedback["exact_f1"] == 0.5 and partial.feedback["label_f1"]["LOC"] == 1.0
    wrong_label = verify([{"text": "London", "label": "PER"}], gold)
    assert wrong_label.reward == 0.0
    assert wrong_label.feedback["spurious"] == ["PER: London"]
    assert "LOC: London" in wrong_label.feedback["missing"]
    assert named("span_exact")(partial_pred := [{"text": "Bank of England", "label": "ORG"}], gold).reward == 0.0
    assert partial_pred


def test_number_rating_taxonomy_pairwise_verifiers():
    assert verifier_for(NUMBER, "amount")(42, 42).reward == 1.0
    assert verifier_for(NUMBER, "amount")(41, 42).reward == 0.0
    assert named("numeric:1")(41, 42).reward == 1.0
    rating = verifier_for(RATING, "stars")
    assert [rating(p, 3).reward for p in (3, 4, 5, None)] == [1.0, 0.75, 0.5, 0.0]
    taxonomy = verifier_for(TAXONOMY, "topic")
    assert taxonomy([["Animal", "Cat"]], [["Animal", "Cat"]]).reward == 1.0
    assert taxonomy([["Animal", "Cat"]], [["Animal", "Dog"]]).reward == pytest.approx(0.5)  # the right ancestor
    assert taxonomy([["Plant", "Tree"]], [["Animal", "Dog"]]).reward == 0.0
    pairwise = verifier_for(PAIRWISE, "pw")
    assert (pairwise("left", "left").reward, pairwise("right", "left").reward) == (1.0, 0.0)


# --- configs and gold files ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ('<View><HyperText name="h" value="$h"/><Labels name="l" toName="h"><Label value="A"/></Labels></View>',
         "spans are supported on Text only"),
        ('<View><Text name="t" value="$t"/><Labels name="l" toName="t"></Labels></View>', "has no Label values"),
        ('<View><Text name="t" value="$t"/><Number name="n" toName="t" min="5" max="1"/></View>', "above max"),
        ('<View><Text name="t" value="$t"/><Rating name="r" toName="t" maxRating="2.5"/></View>', "maxRating"),
        ('<View><Text name="t" value="$t"/><Pairwise name="p" toName="t"/></View>', "must point at 2 objects"),
        ('<View><Text name="t" value="$t"/><Taxonomy name="x" toName="t"/></View>', "has no Choice values"),
    ],
)  # fmt: skip
def test_unusable_tag_configs_are_refused_with_the_reason(config, message):
    with pytest.raises(LabelConfigError) as info:
        parse_label_config(config)
    assert message in str(info.value)


def test_jsonl_gold_with_answers_per_tag(tmp_path):
    config = tmp_path / "config.xml"
    config.write_text(NER_CONFIG, encoding="utf-8")
    gold = tmp_path / "gold.jsonl"
    rows = [
        {"text": "Ada went to Paris.",
         "answer": {"ner": [{"text": "Ada", "label": "PER"}, {"text": "Paris", "label": "LOC"}]}},
        {"text": "Nothing here.", "answer": {"ner": []}},
    ]  # fmt: skip
    gold.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    loaded = load_gold(gold, config=config.read_text())
    assert [item.answer["ner"] for item in loaded.items] == [rows[0]["answer"]["ner"], []]
    rows[0]["answer"]["ner"][0]["label"] = "ANIMAL"
    gold.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    with pytest.raises(GoldError, match="outside the control"):
        load_gold(gold, config=config.read_text())
    pair = tmp_path / "pairs.jsonl"
    pair.write_text(json.dumps({"data": {"first": "a", "second": "b"}, "answer": {"pw": "right"}}), encoding="utf-8")
    (item,) = load_gold(pair, config=PAIRWISE_CONFIG).items
    assert item.answer == {"pw": "right"} and "[first]\na" in item.input


# --- /predict with the scripted LLM ----------------------------------------------------------------------------------

GAZETTEER = {"Zoë Ünal": "PER", "Acme": "ORG", "Tōkyō": "LOC", "New York": "LOC", "New York Times": "ORG"}


def app_failures(client, reason: str) -> float:
    from optimizer.runtime import telemetry

    return (
        telemetry.REGISTRY.get_sample_value("lsml_prediction_failures_total", {"project": "default", "reason": reason})
        or 0.0
    )


def test_predict_returns_exact_spans_and_sends_the_constrained_schema(client, fake_llm):
    fake_llm.responder = tag_responder(GAZETTEER)
    before = app_failures(client, "nothing_found")
    texts = ["  Zoë Ünal 🚀 left Acme for Tōkyō; Acme wept.", "<p>The New York Times, New York</p>", "nobody"]
    response = client.post(
        "/predict",
        json={"tasks": [{"id": i, "data": {"text": t}} for i, t in enumerate(texts)], "label_config": NER_CONFIG},
    )
    assert response.status_code == 200, response.get_json()
    results = [r["result"] if r else r for r in response.get_json()["results"]]
    for text, result in zip(texts, results, strict=True):
        for item in result:
            assert item["value"]["text"] == text[item["value"]["start"] : item["value"]["end"]]
    assert sorted((i["value"]["text"], i["value"]["labels"][0]) for i in results[0]) == [
        ("Acme", "ORG"), ("Acme", "ORG"), ("Tōkyō", "LOC"), ("Zoë Ünal", "PER")
    ]  # fmt: skip
    assert {(i["value"]["text"], i["value"]["labels"][0]) for i in results[1]} == {
        ("New York", "LOC"), ("New York Times", "ORG")
    }  # fmt: skip
    assert results[2] == []  # nothing found: no prediction (an empty one would be stored as final), counted
    assert app_failures(client, "nothing_found") == before + 1
    sent = response_schema(fake_llm.requests[0])["properties"]["ner"]
    assert sent["items"]["properties"]["label"]["enum"] == ["PER", "ORG", "LOC"]


# --- the training job on span annotations ---------------------------------------------------------------------------

PEOPLE = ["Ada Lovelace", "Alan Turing", "Grace Hopper", "Linus Torvalds", "Joan Clarke", "Edsger Dijkstra"]
PLACES = ["Paris", "Lagos", "Lima", "Oslo", "Quito", "Hanoi"]


def ner_tasks(n: int) -> list[dict]:
    tasks = []
    for i in range(n):
        person, place = PEOPLE[i % 6], PLACES[i % 6]
        text = f"On day {i}, {person} flew from {place} to meet Acme."
        spans = [(person, "PER"), (place, "LOC"), ("Acme", "ORG")]
        result = [
            {"from_name": "ner", "to_name": "text", "type": "labels",
             "value": {"start": text.index(t), "end": text.index(t) + len(t), "text": t, "labels": [label]}}
            for t, label in spans
        ]  # fmt: skip
        tasks.append({"id": i + 1, "data": {"text": text}, "annotations": [{"id": 100 + i, "result": result}]})
    return tasks


def test_a_training_job_learns_from_span_annotations(make_settings):
    """Gold read from Labels annotations, scored by span F1, fed back as missed mentions, promoted on a real gain."""
    from optimizer.jobs.training import train_project
    from optimizer.runtime.services import Services
    from testkit.fakellm import FakeLLM, Reply
    from testkit.fakels import FakeLabelStudio
    from testkit.lspayloads import uid

    gazetteer = {**dict.fromkeys(PEOPLE, "PER"), **dict.fromkeys(PLACES, "LOC"), "Acme": "ORG"}
    right, sloppy = tag_responder(gazetteer), tag_responder({"Acme": "ORG"})
    proposer_asked: list[str] = []

    def respond(body: dict) -> Reply:
        if response_schema(body) is None:  # the proposer asks in plain text
            proposer_asked.append(json.dumps(body["messages"]))
            return Reply("Mark every person, place and organisation. NAME-ALL.")
        return right(body) if "NAME-ALL" in body["messages"][0]["content"] else sloppy(body)

    with FakeLLM(respond) as llm, FakeLabelStudio(NER_CONFIG, ner_tasks(30)) as ls:
        settings = make_settings(llm_base_url=llm.base_url, label_studio_url=ls.url, label_studio_api_key=ls.token,
                                 default_prompt="Find the entities.")  # fmt: skip
        services = Services(settings)
        project = uid(1)
        services.projects.seen(project, NER_CONFIG)
        summary = train_project(services, project, "train-ner", lambda **f: None).to_dict()
    assert summary["gold"] == {"annotated_tasks": 30, "used": 30, "skipped": {}}
    assert summary["promoted"], summary.get("reason")
    assert "NAME-ALL" in services.store.current(project).instruction
    # The proposer was told which mentions were missed, by label, not only a score.
    assert any("LOC: " in asked and "PER: " in asked for asked in proposer_asked)
