"""Every job kind has one function, and RQ can import it by the path it stores with the job."""

from __future__ import annotations

from rq.utils import import_attribute

from optimizer.jobs.functions import FUNCTIONS
from optimizer.jobs.kinds import JobKind
from optimizer.jobs.summary import Outcome, RunSummary


def test_every_kind_has_a_function_rq_can_import():
    assert set(FUNCTIONS) == set(JobKind)
    for kind, function in FUNCTIONS.items():
        path = f"{function.__module__}.{function.__qualname__}"
        assert path.startswith("optimizer.jobs."), path
        assert import_attribute(path) is function, kind


def test_an_unknown_kind_reads_as_none():
    assert JobKind.of("train") is JobKind.TRAIN and JobKind.of("nope") is None and JobKind.of(None) is None


def test_a_run_summary_survives_its_json_round_trip_and_refuses_what_is_not_one():
    summary = RunSummary(Outcome.PROMOTED, promoted=True, project="1.2", scores={"val_score": 0.5}, live_after="pv-a")
    stored = summary.to_dict()
    assert stored["status"] == "promoted" and type(stored["status"]) is str and "reason" not in stored
    assert RunSummary.from_result(stored) == summary
    assert RunSummary.from_result({"status": "planned", "total": 3}) is None  # a bulk plan's result
    assert RunSummary.from_result(None) is None and RunSummary.from_result(["promoted"]) is None
    odd = RunSummary.from_result({"status": "rejected", "scores": "junk", "gold": 3, "extra": 1})
    assert odd is not None and odd.scores is None and odd.gold is None and odd.promoted is False


def test_a_job_view_reads_its_meta_once_and_answers_the_documented_shape():
    from optimizer.jobs.views import BulkProgress, JobState, JobView

    meta = {"kind": "train", "phase": "optimizing", "optimizer": {"step": 3, "calls": 40, "budget": "x"}, "done": 2}
    view = JobView("j1", JobState.STARTED, "1.2", JobKind.TRAIN, meta)
    assert (view.phase, view.done, view.total) == ("optimizing", 2, None)
    assert (view.optimizer.step, view.optimizer.calls, view.optimizer.budget) == (3, 40, None)  # a str budget: unread
    assert set(view.to_dict()) == {"id", "status", "state", "project", "kind", "meta", "enqueued_at", "started_at",
                                   "ended_at"}  # fmt: skip
    reserved = JobView("j2", JobState.WAITING, "1.2", JobKind.TRAIN, reserved=True, note="runs when j1 ends")
    assert reserved.to_dict() == {"id": "j2", "status": "waiting", "state": "waiting", "project": "1.2",
                                  "kind": "train", "note": "runs when j1 ends"}  # fmt: skip
    bulk = JobView("b1", JobState.FINISHED, "1.2", JobKind.BULK, progress=BulkProgress(3, 1, 0, 0, {"posted": 3}))
    assert bulk.to_dict()["progress"] == {"total": 3, "chunks": 1, "chunks_active": 0, "chunks_failed": 0,
                                          "chunks_retrying": 0, "tasks": {"posted": 3}, "failed": 0,
                                          "failures": []}  # fmt: skip
    assert (bulk.status, bulk.to_dict()["status"]) == ("finished", "finished")
    # A run with failed tasks never says "finished" alone; its state stays machine-readable.
    tasks = {"posted": 2, "failed_llm": 2, "failed_unparsable": 1}
    partial = JobView("b2", JobState.FINISHED, "1.2", JobKind.BULK, progress=BulkProgress(5, 1, 0, 0, tasks))
    assert partial.to_dict()["status"] == "finished with 3 failed" and partial.to_dict()["state"] == "finished"
    assert JobState.from_rq("canceled") is JobState.CANCELLED and JobState.from_rq("nonsense") is JobState.UNKNOWN
    assert view.summary is None  # no result fetched
