"""Every tag family against a real Label Studio 1.23.2: predictions retrieved, stored unchanged, and read as gold.

One backend under gunicorn is connected to five projects, one per config of ``testkit/constants.py``
(Labels on Text, Number, Rating, Taxonomy, Pairwise). Label Studio itself calls ``/setup`` and ``/predict`` on
Retrieve Predictions; the test reads the stored predictions back through the SDK and checks that they are exactly
what the backend answers (Label Studio took them as they are), that every span's ``text`` is the task text at its
offsets, and that label-studio-sdk's own validator accepts them for the config. Annotations made from them then come
back through the training job's client and ``items_from_tasks`` as gold that scores 1.0 against the prediction.
"""

from __future__ import annotations

import httpx
import pytest
from label_studio_sdk.label_interface import LabelInterface

from optimizer.labelstudio.client import LabelStudioClient
from optimizer.labelstudio.labelconfig import parse_label_config
from optimizer.labelstudio.results import answer_from_result
from optimizer.learning.gold import items_from_tasks
from optimizer.learning.verifiers import combine
from testkit.constants import NER_CONFIG, NUMBER_CONFIG, PAIRWISE_CONFIG, RATING_CONFIG, TAXONOMY_CONFIG
from testkit.tagllm import tag_responder

pytestmark = [pytest.mark.labelstudio, pytest.mark.slow]

GAZETTEER = {"Zoë Ünal": "PER", "Acme": "ORG", "Tōkyō": "LOC", "New York": "LOC", "New York Times": "ORG"}

PROJECTS = {
    "ner": (NER_CONFIG, [
        {"text": "Zoë Ünal 🚀 left Acme for Tōkyō; Acme wept."},
        {"text": "<b>The New York Times</b> moved to New York.\nAcme did not."},
        {"text": "  Nobody here.  "},
    ]),
    "amount": (NUMBER_CONFIG, [{"text": "The bill was 42.5 dollars."}, {"text": "It cost 7."}]),
    "stars": (RATING_CONFIG, [{"text": "Great ****"}, {"text": "Meh **"}]),
    "topic": (TAXONOMY_CONFIG, [{"text": "A cat and a dog."}, {"text": "One tall tree."}]),
    "pw": (PAIRWISE_CONFIG, [{"first": "fine", "second": "much better"}, {"first": "better", "second": "worse"}]),
}  # fmt: skip

EXPECTED = {
    "amount": [{"number": 42.5}, {"number": 7}],
    "stars": [{"rating": 4}, {"rating": 2}],
    "topic": [{"taxonomy": [["Animal", "Cat"], ["Animal", "Dog"]]}, {"taxonomy": [["Plant", "Tree"]]}],
    "pw": [{"selected": "right"}, {"selected": "left"}],
}


def _span_set(result: list[dict]) -> set[tuple[str, str]]:
    return {(i["value"]["text"], i["value"]["labels"][0]) for i in result}


def test_each_tag_is_predicted_stored_unchanged_and_read_back_as_gold(labelstudio, start_backend, fake_llm):
    fake_llm.responder = tag_responder(GAZETTEER)
    backend = start_backend(fake_llm.base_url, env={"DEFAULT_PROMPT": "Annotate the text."})
    client = LabelStudioClient(labelstudio.url, labelstudio.token)

    for control, (config, tasks) in PROJECTS.items():
        project, task_ids = labelstudio.create_project(config, tasks, title=f"tags {control}")
        labelstudio.connect_backend(project.id, backend.url)
        done = labelstudio.retrieve_predictions(project.id)
        assert done["processed_items"] == len(tasks), (control, backend.log_tail())

        # What the backend answers for these tasks now (same policy, same scripted model).
        direct = httpx.post(
            backend.url + "/predict",
            json={
                "tasks": [{"id": i, "data": t} for i, t in zip(task_ids, tasks, strict=True)],
                "label_config": config,
            },
            timeout=30,
        )
        assert direct.status_code == 200, direct.text
        answered = [r["result"] if r else [] for r in direct.json()["results"]]

        interface = LabelInterface(config)
        schema = parse_label_config(config)
        for task_id, data, expected in zip(task_ids, tasks, answered, strict=True):
            if not expected:
                # Nothing found: no prediction is sent, so Label Studio stores none (an empty one would be final).
                assert labelstudio.predictions(task_id) == [], (control, task_id)
                continue
            (prediction,) = labelstudio.predictions(task_id)
            stored = prediction["result"]
            assert stored == expected, (control, task_id)  # Label Studio kept every field as the backend sent it
            assert all(item["from_name"] == control for item in stored)
            if control != "pw":
                # The SDK's validator expects to_name to be an object; for Pairwise the SDK itself (PairwiseTag.label)
                # and Label Studio use the control's own name, which its validator does not know.
                assert interface.validate_prediction(prediction, return_errors=True) == [], (control, stored)
            if control == "ner":
                for item in stored:
                    value = item["value"]
                    assert value["text"] == data["text"][value["start"] : value["end"]]
            # The gold this result makes, as an annotator who accepted it would leave it.
            labelstudio.client.annotations.create(id=task_id, result=stored)

        if control == "ner":
            results = [p[0]["result"] if (p := labelstudio.predictions(t)) else [] for t in task_ids]
            assert _span_set(results[0]) == {("Zoë Ünal", "PER"), ("Acme", "ORG"), ("Tōkyō", "LOC")}
            assert len(results[0]) == 4  # both "Acme"s
            assert _span_set(results[1]) == {("New York Times", "ORG"), ("New York", "LOC"), ("Acme", "ORG")}
            assert results[2] == []
        else:
            values = [[i["value"] for i in labelstudio.predictions(t)[0]["result"]] for t in task_ids]
            assert values == [[v] for v in EXPECTED[control]], control

        # Gold through the training job's own client and mapping: each annotation scores 1.0 against its prediction.
        items, skipped = items_from_tasks(schema, client.annotated_tasks(project.id))
        nonempty = [a for a in answered if a]
        assert len(items) == len(nonempty) and not skipped.get("not a task"), (control, skipped)
        for item, result, data in zip(
            items, nonempty, [t for t, a in zip(tasks, answered, strict=True) if a], strict=True
        ):
            predicted = answer_from_result(schema, result, data)
            assert item.answer == predicted or combine(schema, predicted, item.answer).reward == 1.0, control
