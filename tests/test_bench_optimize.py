"""The optimiser bench's data interface and baselines on a third data set (20 labels, multi-label), scripted LLM.

``--data DIR --datasets NAME`` with ``DIR/NAME/{train,test}.jsonl`` and ``labels.json`` must run any label count;
knn, linear, gepa and ours must stay within the same call budget, and ours must learn here: the scripted labeller
answers the first label its enum offers, as a weak model picks the first labels it reads, so what wins is a learned
answer (a ranker, or the LLM narrowed to a ranker's candidates).
"""

import importlib.util
import json

import pytest

from bench import optimize as bench
from testkit.fakellm import FakeLLM, Reply, response_schema
from tests.support.gating import need


@pytest.fixture(autouse=True)
def gepa_installed():
    """Under ``make test`` a missing gepa fails (it comes with requirements-dev.txt); elsewhere it skips."""
    need(importlib.util.find_spec("gepa") is not None, "gepa (bench/requirements.txt, part of requirements-dev.txt)")


LABELS = [f"topic_{i:02d}" for i in range(20)]


def rows(n: int, offset: int) -> list[dict]:
    out = []
    for j in range(n):
        i = (j + offset) % 20
        other = (i + 7) % 20
        text = f"note {j + offset}: code{i:02d}{'abc'[j % 3]} and code{other:02d}x today"
        out.append({"text": text, "labels": [LABELS[i], LABELS[other]] if j % 2 else [LABELS[i]]})
    return out


def responder(body: dict) -> Reply:
    schema = response_schema(body)
    if schema is None:  # the proposer (ours) or GEPA's reflection: an instruction in a fenced block
        return Reply("```\nPick the labels that fit the note.\n```")
    return Reply(json.dumps({"label": [schema["properties"]["label"]["items"]["enum"][0]]}))


def test_bench_runs_a_third_dataset_with_every_method(tmp_path):
    folder = tmp_path / "data" / "tiny20"
    folder.mkdir(parents=True)
    (folder / "labels.json").write_text(json.dumps(LABELS))
    (folder / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows(80, 0)) + "\n")
    (folder / "test.jsonl").write_text("\n".join(json.dumps(r) for r in rows(30, 3)) + "\n")
    out = tmp_path / "results.json"
    with FakeLLM(responder) as llm:
        code = bench.main(["--data", str(tmp_path / "data"), "--datasets", "tiny20", "--gold", "40", "--test", "20",
                           "--seeds", "0", "--base-url", llm.base_url, "--out", str(out),
                           "--methods", "initial,knn,linear,gepa,ours"])  # fmt: skip
    assert code == 0
    ds = json.loads(out.read_text())["tiny20"]
    runs = ds["runs"]
    assert ds["multiple"] is True and set(runs) == {"initial/0", "knn/0", "linear/0", "gepa/0", "ours/0"}
    budget = 3 * 40 + 3
    assert all(runs[m]["calls"] <= budget for m in ("gepa/0", "ours/0"))
    assert runs["gepa/0"]["calls"] > 25  # it really searched: more than the seed's validation pass
    assert runs["knn/0"]["calls"] == 0 and runs["knn/0"]["knn"]["k"] >= 1
    initial, ours = runs["initial/0"]["test"]["reward"], runs["ours/0"]["test"]["reward"]
    assert runs["knn/0"]["test"]["reward"] > initial
    assert runs["linear/0"]["calls"] == 0 and runs["linear/0"]["test"]["reward"] > initial
    learned = runs["ours/0"]["mode"] in ("ranker", "cascade") or runs["ours/0"]["narrow_k"] > 0
    assert ours > initial and learned  # a learned answer passed the gate and helps on test
    assert runs["ours/0"]["test"]["llm_calls_per_100"] < 100 or runs["ours/0"]["mode"] == "llm"
    assert runs["initial/0"]["test"]["llm_calls_per_100"] == 100
    table = bench.table({"tiny20": ds})
    assert "| tiny20 | 40 | knn | item F1" in table and "| tiny20 | 40 | linear |" in table
    assert "| tiny20 | 40 | gepa |" in table
