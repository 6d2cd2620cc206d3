"""Cost per project: tokens from the provider's usage, priced per profile (else the price table), and the daily limit.

The scripted LLM answers with a ``usage`` block like any OpenAI-compatible server; the backend runs in-process on
real Redis. What matters is what a user reads back: ``GET /projects/<p>/spend``, the dashboard, ``/metrics``, and
``/predict`` refusing with the reason ``budget`` once the limit is spent.
"""

from __future__ import annotations

import json
import logging

import pytest

from optimizer.learning.cost import Price, PriceSource
from optimizer.learning.prices import EMBEDDED_MODEL, lookup, quote, table
from optimizer.settings import Settings
from testkit.constants import ROOT, SUPPORT_CONFIG
from testkit.lspayloads import uid

PROJECT_ID = 6
TASKS = [{"id": i, "data": {"dialogue": [{"author": "Customer", "text": f"Billing question #{i}"}]}} for i in (1, 2, 3)]


# --- prices ---------------------------------------------------------------------------------------------------------


def test_the_price_table_knows_hosted_models_exactly_and_never_guesses():
    assert len(table()) > 1000
    assert lookup("gpt-4o-mini") == ("gpt-4o-mini", Price(0.15, 0.6))
    assert lookup("openai/gpt-4o-mini") == ("gpt-4o-mini", Price(0.15, 0.6))  # a gateway's vendor prefix
    assert lookup("llama3", "ollama")[0] == "ollama/llama3"
    assert lookup("gpt-4o-mini-but-not-quite") is None and lookup("GPT-4O-MINI") is None
    assert quote("my-finetune").source is PriceSource.UNPRICED and not quote("my-finetune").priced
    embedded = quote(EMBEDDED_MODEL)
    assert embedded.source is PriceSource.EMBEDDED and embedded.priced and embedded.price == Price(0, 0)


def test_a_profile_price_overrides_the_table_one_side_at_a_time():
    settings = Settings(
        _env_file=None,
        llm_model="gpt-4o-mini",
        llm_profiles={
            "cheap": {"base_url": "http://127.0.0.1:1/v1", "model": "gpt-4o-mini", "price_input_per_1m": 0.05},
            "local": {"base_url": "http://127.0.0.1:2/v1", "model": "my-finetune"},
            "optimizer": {"base_url": "http://127.0.0.1:3/v1", "model": "gpt-4.1-nano"},  # not the proposer's
        },
        optimizer_model="gpt-4o",
    )
    assert settings.price_quote().price == Price(0.15, 0.6) and settings.price_quote().source is PriceSource.TABLE
    cheap = settings.price_quote("cheap")
    assert cheap.price == Price(0.05, 0.6) and cheap.source is PriceSource.SET
    assert settings.price_quote("cheap", model="gpt-4.1-nano").price == Price(0.05, 0.4)  # a project's own model
    assert settings.price_quote("local").source is PriceSource.UNPRICED
    assert settings.proposer_quote().price == Price(2.5, 10.0)
    assert settings.price_quote("optimizer").price == Price(0.1, 0.4)
    assert Settings(_env_file=None).price_quote().source is PriceSource.EMBEDDED


def test_the_vendored_table_is_what_the_script_writes(tmp_path):
    """Regenerating from a wheel-shaped archive gives the committed file's format: sorted, per 1M tokens."""
    import zipfile

    from scripts.price_table import MAP, write
    from scripts.price_table import table as build

    wheel = tmp_path / "litellm-9.9.9-py3-none-any.whl"
    cost_map = {
        "b-model": {"mode": "chat", "input_cost_per_token": 1.5e-07, "output_cost_per_token": 6e-07},
        "a-model": {"mode": "chat", "input_cost_per_token": 0, "output_cost_per_token": 0},
        "embedder": {"mode": "embedding", "input_cost_per_token": 1e-07, "output_cost_per_token": 0},
        "half": {"mode": "chat", "input_cost_per_token": 1e-07},
        "sample_spec": {"mode": "one of: chat, ..."},
    }
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(MAP, json.dumps(cost_map))
        archive.writestr("litellm-9.9.9.dist-info/METADATA", "Name: litellm\nVersion: 9.9.9\n")
    out = tmp_path / "prices.json"
    write(build(wheel), out)
    written = json.loads(out.read_text())
    assert written["models"] == {"a-model": [0.0, 0.0], "b-model": [0.15, 0.6]}
    assert list(written["models"]) == sorted(written["models"]) and "litellm 9.9.9" in written["source"]
    committed = json.loads((ROOT / "optimizer" / "learning" / "model_prices.json").read_text())
    assert set(committed) == set(written) and committed["source"].startswith("litellm ")


# --- spend through the app ------------------------------------------------------------------------------------------


@pytest.fixture
def app_client(make_settings):
    from _wsgi import create_app

    def build(**overrides):
        app = create_app(make_settings(**overrides))
        return app.test_client(), app.extensions["services"]

    return build


def setup(client, extra_params=None):
    body = {"project": uid(PROJECT_ID), "schema": SUPPORT_CONFIG, "extra_params": extra_params}
    answer = client.post("/setup", json=body)
    assert answer.status_code == 200, answer.get_data(as_text=True)


def predict(client, tasks=TASKS) -> list:
    body = {"tasks": tasks, "project": uid(PROJECT_ID), "label_config": SUPPORT_CONFIG}
    answer = client.post("/predict", json=body)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return answer.get_json()["results"]


def test_serving_calls_are_charged_to_the_project_and_profile_at_the_price_in_force(app_client, fake_llm):
    profiles = {"cheap": {"base_url": fake_llm.base_url, "model": "gpt-4.1-nano", "price_output_per_1m": 1.0}}
    client, _ = app_client(llm_model="gpt-4o-mini", llm_profiles=profiles)
    setup(client)
    assert all(r["result"] for r in predict(client))
    setup(client, {"profile": "cheap"})
    assert all(r["result"] for r in predict(client, TASKS[:2]))

    spend = client.get(f"/projects/{PROJECT_ID}/spend").get_json()
    rows = {(r["role"], r["profile"]): r for r in spend["today"]["rows"]}
    assert set(rows) == {("labeller", "default"), ("labeller", "cheap")}
    default, cheap = rows[("labeller", "default")], rows[("labeller", "cheap")]
    assert default["calls"] == 3 and cheap["calls"] == 2
    sent = [r for r in fake_llm.requests]
    assert [r["model"] for r in sent] == ["gpt-4o-mini"] * 3 + ["gpt-4.1-nano"] * 2
    assert default["prompt_tokens"] > 0 and default["completion_tokens"] > 0
    assert default["cost"] == pytest.approx(
        (default["prompt_tokens"] * 0.15 + default["completion_tokens"] * 0.6) / 1e6
    )
    assert cheap["cost"] == pytest.approx((cheap["prompt_tokens"] * 0.1 + cheap["completion_tokens"] * 1.0) / 1e6)
    assert spend["today"]["cost"] == pytest.approx(default["cost"] + cheap["cost"])
    assert spend["prices"]["labeller"] == {"model": "gpt-4.1-nano", "source": "set", "entry": "gpt-4.1-nano",
                                           "input_per_1m": 0.1, "output_per_1m": 1.0}  # fmt: skip

    metrics = client.get("/metrics").get_data(as_text=True)
    line = f'lsml_project_spend_today{{profile="default",project="{uid(PROJECT_ID)}",role="labeller"}}'
    assert f"{line} {default['cost']}" in metrics
    page = client.get(f"/dashboard/projects/{PROJECT_ID}").get_data(as_text=True)
    assert 'data-role="labeller" data-profile="cheap"' in page and f"${spend['today']['cost']:.6f}" in page
    listing = client.get("/dashboard").get_data(as_text=True)
    assert f"${spend['today']['cost']:.6f}" in listing


def test_an_unknown_model_is_counted_but_shown_as_not_priced(app_client):
    client, _ = app_client(llm_model="my-finetune")
    setup(client)
    predict(client, TASKS[:1])
    today = client.get(f"/projects/{PROJECT_ID}/spend").get_json()["today"]
    assert today["calls"] == 1 and today["cost"] == 0 and today["unpriced_calls"] == 1
    assert "1 calls not priced" in client.get(f"/dashboard/projects/{PROJECT_ID}").get_data(as_text=True)


class Grab(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_past_its_daily_limit_a_project_gets_no_prediction_with_the_reason_budget(app_client, fake_llm):
    client, services = app_client(llm_model="gpt-4o-mini")
    setup(client, {"daily_spend_limit": 0.000001})  # a millionth of a dollar: the first batch spends more
    assert all(r["result"] for r in predict(client))
    spent = services.spend.spent_today(uid(PROJECT_ID))
    assert spent > 0.000001
    called = len(fake_llm.requests)

    grab = Grab()
    logging.getLogger("optimizer.runtime.annotator").addHandler(grab)
    try:
        refused = predict(client)
    finally:
        logging.getLogger("optimizer.runtime.annotator").removeHandler(grab)
    assert refused == [[], [], []]  # no prediction at all: Label Studio stores nothing and asks again later
    assert len(fake_llm.requests) == called  # and no LLM call was made
    assert len(grab.lines) == 1 and "budget 3" in grab.lines[0] and "daily spend limit reached" in grab.lines[0]
    metrics = client.get("/metrics").get_data(as_text=True)
    assert f'lsml_prediction_failures_total{{project="{uid(PROJECT_ID)}",reason="budget"}} 3.0' in metrics
    assert f'lsml_project_daily_spend_limit{{project="{uid(PROJECT_ID)}"}} 1e-06' in metrics
    spend = client.get(f"/projects/{PROJECT_ID}/spend").get_json()
    assert spend["over_limit"] is True and spend["daily_spend_limit"] == 0.000001
    assert "limit reached" in client.get(f"/dashboard/projects/{PROJECT_ID}").get_data(as_text=True)

    setup(client, {"daily_spend_limit": 1.0})  # raised in the Extra params: served again at once
    assert all(r["result"] for r in predict(client))


def test_a_negative_limit_is_a_400_naming_the_key(app_client):
    client, _ = app_client()
    answer = client.post("/setup", json={"project": uid(PROJECT_ID), "schema": SUPPORT_CONFIG,
                                         "extra_params": {"daily_spend_limit": -1}})  # fmt: skip
    assert answer.status_code == 400 and "daily_spend_limit" in answer.get_json()["error"]


def test_a_training_run_charges_labeller_and_proposer_to_the_project_and_stops_at_the_limit(make_settings):
    from optimizer.jobs.errors import JobError
    from optimizer.jobs.training import train_project
    from optimizer.runtime.services import Services
    from testkit.fakellm import FakeLLM
    from testkit.fakels import FakeLabelStudio
    from testkit.training_stack import gold_tasks, magic_responder

    project = uid(1)
    with FakeLLM(magic_responder) as llm, FakeLabelStudio(SUPPORT_CONFIG, gold_tasks()) as ls:
        settings = make_settings(llm_base_url=llm.base_url, llm_model="gpt-4o-mini", label_studio_url=ls.url,
                                 label_studio_api_key=ls.token, optimize_budget=40)  # fmt: skip
        services = Services(settings)
        services.projects.seen(project, SUPPORT_CONFIG)
        summary = train_project(services, project, "train-spend", lambda **_: None)
        usage = summary.report["usage"]
        rows = {(r.role, r.profile): r for r in services.spend.today(project)}
        assert set(rows) == {("labeller", "default"), ("proposer", "optimizer")}
        for role, key in (("labeller", ("labeller", "default")), ("proposer", ("proposer", "optimizer"))):
            assert rows[key].prompt_tokens == usage[role]["prompt_tokens"] > 0
            assert rows[key].completion_tokens == usage[role]["completion_tokens"]
        assert rows[("proposer", "optimizer")].cost > 0

        services.projects.save_settings(project, json.dumps({"daily_spend_limit": 0.0000001}))
        with pytest.raises(JobError, match="daily spend limit reached"):
            train_project(services, project, "train-spend-2", lambda **_: None)


def test_a_bulk_chunk_past_the_limit_posts_nothing_and_counts_budget(make_settings):
    from optimizer.jobs.bulk import run_chunk
    from optimizer.runtime.services import Services
    from testkit.fakellm import FakeLLM
    from testkit.fakels import FakeLabelStudio
    from testkit.training_stack import gold_tasks

    project = uid(1)
    with FakeLLM() as llm, FakeLabelStudio(SUPPORT_CONFIG, gold_tasks(0, 3)) as ls:
        settings = make_settings(llm_base_url=llm.base_url, llm_model="gpt-4o-mini", label_studio_url=ls.url,
                                 label_studio_api_key=ls.token)  # fmt: skip
        services = Services(settings)
        services.projects.seen(project, SUPPORT_CONFIG)
        services.projects.save_settings(project, json.dumps({"daily_spend_limit": 0}))
        version = services.store.current(project).version
        result = run_chunk(services, project, version, [1, 2, 3], "holder-b")
        assert {t: f.reason for t, f in result.failures.items()} == {1: "budget", 2: "budget", 3: "budget"}
        assert not result.outcomes.get("posted") and not any(f.retryable for f in result.failures.values())
        assert ls.predictions() == [] and llm.requests == []
