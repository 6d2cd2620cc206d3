"""Gold loaders (JSON Lines, the seed's JSON, Label Studio exports) and the stratified splits built on them."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from optimizer.labelstudio.labelconfig import parse_label_config
from optimizer.learning.gold import GoldError, GoldItem, choose_annotation, items_from_tasks, load_gold
from optimizer.learning.splits import folds, split
from testkit.constants import SUPPORT_CONFIG, THREE_CONTROLS_CONFIG


def write_jsonl(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def test_jsonl_without_config_gets_a_single_choice_config(tmp_path):
    path = write_jsonl(tmp_path / "g.jsonl", [{"text": "a", "labels": ["x"]}, {"text": "b", "labels": ["Y"]}])
    gold = load_gold(path)
    control = gold.schema.choices[0]
    assert control.name == "label" and control.labels == ("Y", "x") and not control.multiple
    assert [i.id for i in gold.items] == ["L1", "L2"]
    assert gold.items[0] == GoldItem("L1", "a", {"label": ["x"]})
    assert parse_label_config(gold.label_config) == gold.schema  # the written config round-trips


def test_jsonl_with_labels_file_infers_multiple_and_canonicalises_case(tmp_path):
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps(["anger", "joy", "neutral"]))
    rows = [{"text": "t1", "labels": ["Joy", "anger"]}, {"text": "t2", "labels": ["neutral"]}]
    gold = load_gold(write_jsonl(tmp_path / "g.jsonl", rows), labels_path=labels)
    control = gold.schema.choices[0]
    assert control.multiple and control.labels == ("anger", "joy", "neutral")
    assert gold.items[0].answer == {"label": ["joy", "anger"]}


def test_unknown_labels_and_bad_lines_are_clear_errors(tmp_path):
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps(["a"]))
    with pytest.raises(GoldError, match="labels not in the label set: zzz"):
        load_gold(write_jsonl(tmp_path / "g.jsonl", [{"text": "t", "labels": ["zzz"]}]), labels_path=labels)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok", "labels": ["a"]}\n{"text": 3}\n')
    with pytest.raises(GoldError, match=r"bad.jsonl:2: expected"):
        load_gold(bad)
    with pytest.raises(GoldError, match="cannot read"):
        load_gold(tmp_path / "missing.jsonl")


def test_jsonl_through_a_given_config_lands_in_its_object(tmp_path):
    config = (
        '<View><Text name="body" value="$body"/><Choices name="s" toName="body">'
        '<Choice value="pos"/><Choice value="neg"/></Choices></View>'
    )
    rows = [{"text": "good", "labels": ["pos"]}, {"text": "two", "labels": ["pos", "neg"]}]
    gold = load_gold(write_jsonl(tmp_path / "g.jsonl", rows), config=config)
    assert [i.answer for i in gold.items] == [{"s": ["pos"]}]
    assert gold.skipped == Counter({"not exactly one label for a single choice": 1})


def test_seed_ground_truth_renders_dialogues(tmp_path):
    rows = [
        {"dialogue": [{"author": "user", "text": "Hi"}, {"author": "bot", "text": "Hello!"}], "labels": ["Greeting"]},
        {"dialogue": [{"author": "user", "text": "Refund please"}], "labels": ["Billing", "Complaint"]},
    ]
    path = tmp_path / "ground_truth_data.json"
    path.write_text(json.dumps(rows))
    gold = load_gold(path)
    assert gold.format == "seed" and gold.schema.objects[0].tag == "Paragraphs"
    assert gold.items[0].input == "user: Hi\nbot: Hello!"
    assert gold.schema.choices[0].multiple
    through_config = load_gold(path, config=SUPPORT_CONFIG)
    assert through_config.items[1].answer == {"intent": ["Billing", "Complaint"]}
    assert through_config.items[1].input == "user: Refund please"


def _task(task_id, annotations, text="late parcel"):
    return {"id": task_id, "data": {"text": text}, "annotations": annotations}


def _ann(ann_id, label, **extra):
    result = [{"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": [label]}}]
    return {"id": ann_id, "result": result, "was_cancelled": False, **extra}


def test_label_studio_export_skips_cancelled_and_picks_the_latest_annotation(tmp_path):
    schema = parse_label_config(THREE_CONTROLS_CONFIG)
    tasks = [
        _task(
            1,
            [
                _ann(10, "positive", updated_at="2024-01-02T00:00:00Z"),
                _ann(11, "negative", updated_at="2024-01-01T00:00:00Z"),
            ],
        ),
        _task(2, [_ann(20, "neutral", was_cancelled=True)]),
        _task(3, [_ann(30, "neutral"), _ann(31, "negative", ground_truth=True)]),
        _task(4, [_ann(40, "neutral")], text=None),
        {"id": 5, "data": {"other": "x"}, "annotations": [_ann(50, "neutral")]},
        "garbage",
    ]
    items, skipped = items_from_tasks(schema, tasks)
    assert [(i.id, i.answer["sentiment"]) for i in items] == [("task-1", ["positive"]), ("task-3", ["negative"])]
    assert skipped == Counter({"no usable annotation": 1, "input empty": 1, "input missing": 1, "not a task": 1})
    assert choose_annotation(schema, [_ann(1, "neutral"), _ann(2, "positive")])["id"] == 2  # same stamp: highest id
    export = tmp_path / "export.json"
    export.write_text(json.dumps(tasks[:3]))
    gold = load_gold(export, config=THREE_CONTROLS_CONFIG)
    assert gold.format == "labelstudio" and len(gold.items) == 2
    with pytest.raises(GoldError, match="needs the project's label config"):
        load_gold(export)


def test_prompt_typed_in_an_annotation_is_kept():
    schema = parse_label_config(SUPPORT_CONFIG)
    result = [
        {"from_name": "intent", "to_name": "chat", "type": "choices", "value": {"choices": ["Billing"]}},
        {"from_name": "prompt", "to_name": "chat", "type": "textarea", "value": {"text": ["Be terse."]}},
    ]
    task = {
        "id": 7,
        "data": {"dialogue": [{"author": "u", "text": "bill?"}]},
        "annotations": [{"id": 1, "result": result}],
    }
    items, _ = items_from_tasks(schema, [task])
    assert items[0].prompt == "Be terse." and items[0].answer == {"intent": ["Billing"]}


def _items(n_per_label, labels):
    out = []
    for label in labels:
        for i in range(n_per_label):
            out.append(GoldItem(f"{label}{i}", f"text {label} {i}", {"label": [label]}))
    return out


def test_split_is_stratified_disjoint_and_deterministic():
    items = _items(10, ["a", "b", "c"])
    parts = split(items, seed=3)
    assert parts.sizes() == {"train": 18, "val": 6, "test": 6}
    ids = [i.id for part in (parts.train, parts.val, parts.test) for i in part]
    assert sorted(ids) == sorted(i.id for i in items)
    for part, share in ((parts.train, 6), (parts.val, 2), (parts.test, 2)):
        assert Counter(i.answer["label"][0] for i in part) == {"a": share, "b": share, "c": share}
    assert split(items, seed=3) == parts
    assert split(list(reversed(items)), seed=3).sizes() == parts.sizes()
    assert split(items, seed=4).test != parts.test


def test_split_without_test_and_folds():
    items = _items(4, ["a", "b", "c"])
    parts = split(items, seed=0, fractions=(2.0, 1.0, 0.0))
    assert parts.sizes() == {"train": 8, "val": 4, "test": 0}
    assert parts.part("all") == parts.train + parts.val
    chunks = folds(items, 3, seed=0)
    assert [len(c) for c in chunks] == [4, 4, 4]
    assert sorted(i.id for c in chunks for i in c) == sorted(i.id for i in items)
    with pytest.raises(ValueError):
        split(items, fractions=(0.0, 0.0, 0.0))


def test_multilabel_items_are_stratified_by_their_rarest_label():
    items = [GoldItem(f"c{i}", f"t{i}", {"label": ["common"]}) for i in range(8)]
    items += [GoldItem(f"r{i}", f"r{i}", {"label": ["common", "rare"]}) for i in range(4)]
    parts = split(items, seed=1, fractions=(0.5, 0.5, 0.0))
    assert sum(1 for i in parts.train if "rare" in i.answer["label"]) == 2
