"""``python -m optimizer optimize|evaluate`` against scripted LLMs over real HTTP, and its error handling."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time

import pytest

from optimizer.cli import main as cli
from optimizer.learning.gold import GoldItem
from testkit.constants import ROOT
from testkit.fakellm import FakeLLM, Reply
from testkit.scripted import Labeller, fixed_proposer, gold_jsonl, make_gold

# Texts that say nothing about their label: only the scripted labeller (which looks answers up) can be right, so what
# the CLI promotes is the proposer's rewrite, not a ranker learned from the words (tests/test_learned_loop.py).
GOLD = [
    GoldItem(item.id, f"request {hashlib.sha256(item.id.encode()).hexdigest()[:8]} please", item.answer)
    for item in make_gold(40)
]


@pytest.fixture
def endpoints(monkeypatch, tmp_path):
    """Fake labeller and proposer, wired in through the same environment variables users set."""
    with (
        FakeLLM(Labeller(GOLD, base=0.4, markers={"CAREFUL": 0.95})) as lab,
        FakeLLM(fixed_proposer("Read each request twice. CAREFUL")) as prop,
    ):
        monkeypatch.chdir(tmp_path)  # no .env from the checkout
        monkeypatch.setenv("LLM_BASE_URL", lab.base_url)
        monkeypatch.setenv("LLM_MODEL", "fake")
        monkeypatch.setenv("OPTIMIZER_BASE_URL", prop.base_url)
        monkeypatch.setenv("LLM_MAX_RETRIES", "0")
        yield lab, prop


def write_gold(tmp_path):
    path = tmp_path / "gold.jsonl"
    path.write_text(gold_jsonl(GOLD))
    return path


def test_optimize_writes_prompt_policy_and_report(endpoints, tmp_path, capsys, monkeypatch):
    lab, prop = endpoints
    monkeypatch.setenv("OPTIMIZER_BASE_URL", prop.base_url.replace("http://", "http://user:hunter2-secret@"))
    out = tmp_path / "out"
    status = cli.main(["optimize", "--gold", str(write_gold(tmp_path)), "--prompt", "Label the request.",
                       "--budget", "150", "--seed", "2", "--out", str(out)])  # fmt: skip
    assert status == 0
    captured = capsys.readouterr()
    assert "promoted" in captured.out and "calls" in captured.out
    assert "calls" in captured.err and "best val" in captured.err  # the progress bar
    assert (out / "optimized_prompt.txt").read_text().strip() == "Read each request twice. CAREFUL"
    policy = json.loads((out / "policy.json").read_text())
    report = json.loads((out / "report.json").read_text())
    assert report["accepted"] and report["best"]["version"] == policy["version"]
    assert report["calls"] == len(lab.requests) + len(prop.requests) <= 150
    assert report["test"]["best"]["reward"] > report["test"]["initial"]["reward"]
    assert report["gold"]["format"] == "jsonl" and report["gold"]["items"] == 40
    assert "<Choices" in report["label_config"]
    statuses = {c["status"] for s in report["run"]["steps"] for c in s["candidates"]}
    assert "promoted" in statuses
    assert report["usage"]["labeller"]["prompt_tokens"] > 0
    assert not any(body.get("logprobs") for body in lab.requests)  # scoring does not pay for confidences
    assert "hunter2" not in (out / "report.json").read_text() and report["proposer"]["base_url"] == prop.base_url


def test_evaluate_scores_a_split_and_reads_a_written_policy(endpoints, tmp_path, capsys):
    gold = str(write_gold(tmp_path))
    assert cli.main(["evaluate", "--gold", gold, "--prompt", "Be CAREFUL.", "--split", "val"]) == 0
    careful = json.loads(capsys.readouterr().out)
    assert careful["split"] == "val" and careful["metrics"]["n"] == 8 and careful["calls"] == 8
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"instruction": "Plain.", "demos": [], "demo_k": 0}))
    assert cli.main(["evaluate", "--gold", gold, "--policy", str(policy), "--split", "val"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert plain["metrics"]["reward"] < careful["metrics"]["reward"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--gold", "missing.jsonl"], "cannot read"),
        (["--gold", "{gold}", "--candidates", "5"], "candidates per step must be 2-4"),
        (["--gold", "{gold}", "--labels", "{labels}"], "labels not in the label set"),
        (["--gold", "{export}"], "needs the project's label config"),
        (["--gold", "{gold}", "--policy", "nope.json"], "nope.json"),
    ],
)
def test_bad_input_is_a_clear_error_not_a_crash(endpoints, tmp_path, capsys, args, message):
    files = {
        "gold": str(write_gold(tmp_path)),
        "labels": str(tmp_path / "labels.json"),
        "export": str(tmp_path / "export.json"),
    }
    (tmp_path / "labels.json").write_text(json.dumps(["alpha"]))
    (tmp_path / "export.json").write_text(json.dumps([{"id": 1, "data": {"text": "x"}, "annotations": []}]))
    argv = ["optimize", *[a.format(**files) for a in args], "--out", str(tmp_path / "out")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert not (tmp_path / "out").exists()


def register(subparsers):
    hello = subparsers.add_parser("hello")
    hello.set_defaults(func=lambda args: 7)


def test_commands_from_other_modules_plug_in(monkeypatch):
    monkeypatch.setattr(cli, "COMMAND_MODULES", [*cli.COMMAND_MODULES, "tests.test_cli_optimize"])
    assert cli.main(["hello"]) == 7


def test_module_entry_point_lists_the_commands():
    done = subprocess.run([sys.executable, "-m", "optimizer", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0
    assert "optimize" in done.stdout and "evaluate" in done.stdout


def test_optimize_runs_on_ner_gold_scored_by_span_f1(tmp_path, monkeypatch, capsys):
    """The whole loop on a Labels config: JSONL gold with span answers, the scripted model misses every LOC."""
    from testkit.constants import NER_CONFIG
    from testkit.tagllm import tag_responder

    people = ["Ada Lovelace", "Alan Turing", "Grace Hopper", "Linus Torvalds"]
    places = ["Paris", "Lagos", "Lima", "Oslo"]
    rows = [
        {"text": f"{people[i % 4]} met Acme in {places[i % 4]} on day {i}.",
         "answer": {"ner": [{"text": people[i % 4], "label": "PER"}, {"text": "Acme", "label": "ORG"},
                            {"text": places[i % 4], "label": "LOC"}]}}
        for i in range(40)
    ]  # fmt: skip
    gold = tmp_path / "ner.jsonl"
    gold.write_text("\n".join(json.dumps(r) for r in rows))
    config = tmp_path / "ner.xml"
    config.write_text(NER_CONFIG)
    with (
        FakeLLM(tag_responder({**dict.fromkeys(people, "PER"), "Acme": "ORG"})) as lab,
        FakeLLM(fixed_proposer("Name every entity.")) as prop,
    ):
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("LLM_BASE_URL", lab.base_url)
        monkeypatch.setenv("OPTIMIZER_BASE_URL", prop.base_url)
        monkeypatch.setenv("LLM_MAX_RETRIES", "0")
        status = cli.main(["optimize", "--gold", str(gold), "--config", str(config), "--budget", "60",
                           "--out", str(tmp_path / "out")])  # fmt: skip
    assert status == 0, capsys.readouterr().err
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["gold"]["items"] == 40
    # Two of three mentions right on every item: span F1 = 2 * (2/2 * 2/3) / (1 + 2/3) = 0.8.
    assert report["test"]["initial"]["reward"] == pytest.approx(0.8)
    assert report["test"]["initial"]["failed"] == report["test"]["initial"]["empty"] == 0


def test_optimize_with_no_llm_listening_stops_at_once_with_one_line(tmp_path):
    """It used to spend its whole budget on connection errors (117 of 117 calls) and exit 0 with a report."""
    from testkit.redisserver import free_port

    url = f"http://127.0.0.1:{free_port()}/v1"
    env = {"PATH": "/usr/bin:/bin", "LLM_BASE_URL": url, "LLM_MODEL": "fake", "PYTHONPATH": str(ROOT)}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "optimizer", "optimize", "--gold", str(write_gold(tmp_path)), "--out", "out"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    assert done.returncode == 3, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and url in lines[0] and "LLM_BASE_URL" in lines[0] and "llm_server.sh" in lines[0]
    assert elapsed < 30 and not (tmp_path / "out").exists()


def test_optimize_against_an_endpoint_refusing_the_key_stops_after_the_first_call(endpoints, tmp_path, capsys):
    lab, _ = endpoints
    lab.responder = lambda body: Reply(status=401, error="invalid api key")
    status = cli.main(["optimize", "--gold", str(write_gold(tmp_path)), "--out", str(tmp_path / "out"), "--quiet"])
    assert status == 3
    err = capsys.readouterr().err
    assert "authentication failed (401)" in err and lab.base_url in err
    assert len(lab.requests) <= 8 and not (tmp_path / "out").exists()  # the first concurrent calls, not the budget


def test_evaluate_with_no_llm_listening_fails_loudly(tmp_path, capsys, monkeypatch):
    from testkit.redisserver import free_port

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LLM_BASE_URL", f"http://127.0.0.1:{free_port()}/v1")
    assert cli.main(["evaluate", "--gold", str(write_gold(tmp_path)), "--prompt", "x"]) == 3
    assert "cannot use the LLM at" in capsys.readouterr().err
