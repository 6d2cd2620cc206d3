"""bench/README.md's tables, generated from the JSON files the benchmarks write under bench/results/ (committed).

    python -m bench.tables            # print every table
    python -m bench.tables --write    # rewrite the tables in bench/README.md
    python -m bench.tables --check    # exit 1 naming every table that differs from its JSON

Each table sits in the README between ``<!-- table:NAME -->`` and ``<!-- /table -->``. ``tests/test_bench_tables.py``
fails when one differs from what its files give, so no figure in a table is copied by hand. To add a table: a
function that renders the loaded files, and one :class:`Table` line in :data:`TABLES` naming them (the optimiser's
result files need no new code: ``optimizer_table`` merges any of them, as ``python -m bench.optimize --table``
does). Formatting that a benchmark prints too lives here once (``serving_rows``) or in the benchmark's module
(``bench.optimize.table``, ``bench.soft_rewards.scripted_table``), and both use the same function.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
README = HERE / "README.md"
BLOCK = re.compile(r"<!-- table:([\w-]+) -->\n(.*?)\n?<!-- /table -->", re.DOTALL)
NO_GROWTH_MB = 5.0  # RSS change between 1,000 and 2,000 predictions below which memory counts as flat


# --- serving: P1, P2, P5, P6 (python -m bench) --------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def serving_rows(results: dict) -> list[tuple[str, str, str, str, str]]:
    """(benchmark, what, measured, goal, verdict) for every serving figure in ``results``; ``python -m bench``
    prints the same rows."""
    out: list[tuple[str, str, str, str, str]] = []

    def add(name: str, what: str, measured: str, goal: str, ok: bool | None) -> None:
        out.append((name, what, measured, goal, "" if ok is None else verdict(ok)))

    if "P1" in results:
        r = results["P1"]
        what = f"/predict {r['tasks']} tasks, LLM {r['llm_delay_s']:.1f} s/call, C={r['concurrency']}"
        measured = f"{r['wall_s']:.2f} s vs sequential {r['sequential_wall_s']:.2f} s = {r['speedup']:.1f}x"
        add("P1", what, measured, ">= 10x faster", r["speedup"] >= 10)
        what = f"  vs ideal ceil({r['tasks']}/{r['concurrency']}) x {r['llm_delay_s']:.1f} s"
        measured = f"{r['wall_s']:.2f} s / {r['ideal_s']:.2f} s = {r['ratio_to_ideal']:.2f}x"
        add("P1", what, measured, "<= 1.3x ideal", r["ratio_to_ideal"] <= 1.3)
    if "P2" in results:
        r = results["P2"]
        wall, direct = r["wall_s"] * 1000, r["direct_llm_wall_s"] * 1000
        measured = f"{r['overhead_ms_per_task']:.2f} ms = ({wall:.0f} - {direct:.0f} ms direct) / {r['tasks']}"
        what = f"overhead per task, 0 ms LLM ({r['tasks']} tasks)"
        add("P2", what, measured, "<= 2 ms", r["overhead_ms_per_task"] <= 2)
        add("P2", "  backend CPU per task (gunicorn worker)", f"{r['backend_cpu_ms_per_task']:.2f} ms", "(info)", None)
        what = f"/health, {r['health_clients']} clients x {1 / r['health_interval_s']:.0f} req/s (median round)"
        worst = max(r["health_p99_ms_rounds"])
        measured = (
            f"p99 {r['health_p99_ms']:.1f} ms (worst round {worst:.1f}; p50 {r['health_p50_ms']:.1f}) at "
            f"{r['health_rps']:.0f} req/s"
        )
        add("P2", what, measured, "p99 <= 5 ms", r["health_p99_ms"] <= 5)
        measured = (
            f"p99 {r['health_closed_loop_p99_ms']:.1f} ms (p50 {r['health_closed_loop_p50_ms']:.1f}) at "
            f"{r['health_closed_loop_rps']:.0f} req/s"
        )
        add("P2", f"  /health, {r['health_clients']} clients closed loop", measured, "(info: saturation)", None)
    if "P5" in results:
        r = results["P5"]
        if "skipped" in r:
            out.append(("P5", "embedded model through the backend", "skipped: " + r["skipped"], ">= 0.9", "SKIP"))
        else:
            what = f"embedded SmolLM2, {r['tasks']} tasks, C={r['concurrency']}"
            measured = f"{r['backend_tasks_per_s']:.2f} vs raw {r['raw_tasks_per_s']:.2f} tasks/s = {r['ratio']:.2f}"
            add("P5", what, measured, "ratio >= 0.9", r["ratio"] >= 0.9)
            measured = f"{r['raw_sequential_tasks_per_s']:.2f} tasks/s raw with 1 in flight"
            add("P5", "  raw server, one request at a time", measured, "(info: LLM_CONCURRENCY)", None)
            raw, ours = r["raw_completion_tokens"], r["backend_completion_tokens"]
            same = bool(raw and ours) and abs(raw / ours - 1) <= 0.25
            add("P5", "  same work: completion tokens", f"raw {raw} vs backend {ours}", "within 25 %", same)
    if "P6" in results:
        for kind, limit in (("web", 200), ("worker", 300)):
            r = results["P6"][kind]
            worst = r.get("worst_mb", r["after_2000_mb"])
            label = "web worker (gunicorn)" if kind == "web" else f"RQ worker: {r['command']}"
            measured = f"rest {r['rest_mb']:.0f} / 1k {r['after_1000_mb']:.0f} / 2k {r['after_2000_mb']:.0f} MB"
            if kind == "worker":
                measured += f"; job peak {r['job_peak_after_2000_mb']:.0f} MB"
            add("P6", f"RSS {label}", measured, f"<= {limit} MB", worst <= limit)
            growth = f"no growth (< {NO_GROWTH_MB:.0f} MB)"
            add(
                "P6",
                "  growth 1k -> 2k predictions",
                f"{r['growth_mb']:+.1f} MB",
                growth,
                r["growth_mb"] < NO_GROWTH_MB,
            )
    return out


def _markdown(header: tuple[str, ...], rows: list[tuple]) -> list[str]:
    cell = lambda value: str(value).replace("|", "\\|")  # noqa: E731
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + [
        "| " + " | ".join(cell(v) for v in row) + " |" for row in rows
    ]


def _load(machine: dict) -> str:
    return f"load average {machine['load_before'][0]:.2f} before, {machine['load_after'][0]:.2f} after"


def serving_table(results: dict) -> str:
    rows = [(name, what.strip() if not what.startswith("  ") else "↳ " + what.strip(), measured, goal, ok)
            for name, what, measured, goal, ok in serving_rows(results)]  # fmt: skip
    machine = results["machine"]
    note = f"Run of {results['started']} on {machine['cpus']} CPUs, {_load(machine)}."
    return "\n".join([*_markdown(("", "benchmark", "measured", "goal", ""), rows), "", note])


# --- retraining R1, R2 and the dashboard D1 -------------------------------------------------------------------------


def retraining_table(results: dict) -> str:
    swap, hooks = results["hot_swap"], results["webhooks"]
    ratio = hooks["answer_ms_median"] / hooks["alone_answer_ms_median"]
    rows = [
        (f"promotion → all {swap['workers']} workers serving the new version ({swap['swaps']} swaps)",
         f"{swap['swap_to_all_workers_ms_median']:.1f} ms", f"max {swap['swap_to_all_workers_ms_max']:.1f} ms"),
        ("stale answers after a promotion returned",
         f"{swap['stale_answers_after_promotion']} of {swap['setup_requests']:,} `/setup` calls", ""),
        ("`/setup` answer while polling (8 clients, fresh connections)", f"{swap['setup_request_ms_median']:.1f} ms",
         ""),
        (f"webhook answer, {hooks['concurrency']} concurrent events ({hooks['events']} events)",
         f"{hooks['answer_ms_median']:.1f} ms",
         f"p95 {hooks['answer_ms_p95']:.1f} ms, max {hooks['answer_ms_max']:.1f} ms"),
        ("webhook answer, one at a time", f"{hooks['alone_answer_ms_median']:.1f} ms",
         f"(×{ratio:.1f} under {hooks['concurrency']}-way concurrency)"),
    ]  # fmt: skip
    lines = _markdown(("measure", "median", "max / p95"), rows)
    if "machine" in results:
        lines += ["", f"Run of {results['started']} on {results['machine']['cpus']} CPUs, {_load(results['machine'])}."]
    return "\n".join(lines)


def dashboard_table(result: dict) -> str:
    lists = result["list_jobs_ms"]
    ratio = lists["with results"] / lists["without results"] if lists["without results"] else float("nan")
    rows = [(f"`{page.split(' ')[0]}`" + page[len(page.split(" ")[0]):], f"{ms:.1f} ms")
            for page, ms in result["pages_ms"].items()]  # fmt: skip
    rows += [
        (f"list {result['runs']} jobs with their results", f"{lists['with results']:.1f} ms"),
        (f"list {result['runs']} jobs without (what listings do)",
         f"{lists['without results']:.1f} ms ({ratio:.1f}x less)"),
    ]  # fmt: skip
    note = (f"{result['projects']} projects × {result['versions_per_project']} versions, {result['runs']} finished "
            f"runs (report {result['report_bytes'] / 1024:.0f} KiB, {result['steps']} steps); medians of "
            f"{result.get('repeat', 11)}; load average {result['load_average'][0]:.1f}.")  # fmt: skip
    return "\n".join([*_markdown(("page or call", "median"), rows), "", note])


# --- bulk pre-annotation B1, B4, B5 (python -m bench.bulk) -------------------------------------------------------


def _b1_rows(name: str, b1: dict, what: str) -> list[tuple]:
    rows = []
    for run in b1["runs"]:
        load = run.get("load") or b1.get("load") or [None]
        rss = f"{max(run['peak_rss_mb']):.1f} MB" if run.get("peak_rss_mb") else ""
        rows.append((what, run["workers"], f"{run['wall_s']:.1f} s", f"**{run['ratio_to_ideal']:.2f}x**",
                     f"{run['posted']}/{run['tasks']}", run["duplicates"], rss,
                     f"{load[0]:.1f}" if load[0] is not None else ""))  # fmt: skip
    return rows


def bulk_table(results: dict) -> str:
    """B1 (1,000 and 10,000 tasks, this code and the code before issue 20, side by side), B4 and B5."""
    rows: list[tuple] = []
    for key, what in (("B1-1000", "B1, 1,000 tasks"), ("B1-1000-before", "B1, 1,000 tasks, before (aee9d44)"),
                      ("B1-10000", "B1, 10,000 tasks")):  # fmt: skip
        if key in results:
            rows += _b1_rows(key, results[key], what)
    lines = [
        "B1: a bulk run through real RQ workers, the scripted LLM at 0.2 s/call, `LLM_GLOBAL_CONCURRENCY=16`; "
        "ideal = tasks / 16 × 0.2 s; timed until the scripted Label Studio holds every task's prediction.",
        "",
    ]
    lines += _markdown(("run", "RQ workers", "until every task is in LS", "vs ideal", "in LS", "duplicates",
                        "worker peak RSS", "load"), rows)  # fmt: skip
    if "B4" in results:
        b4 = results["B4"]
        lines += ["", f"B4: a {b4['tasks']:,}-task bulk run queued ({b4['chunks_queued']} chunks), then "
                      f"`START_TRAINING`: the training run started **{b4['training_started_after_s']:.2f} s** after "
                      f"its trigger (goal ≤ 5 s); the bulk run, cancelled next, ended `{b4['status']}` "
                      f"{b4['cancel_took_s']:.1f} s later (" + ", ".join(
                          f"{name} {n:,}" for name, n in b4["bulk_outcomes"].items()) +
                      f"). Load {b4['load'][0]:.1f}."]  # fmt: skip
    if "B5" in results:
        b5 = results["B5"]
        lines += ["", f"B5: one chunk's import refused by Label Studio 3 times, then accepted: {b5['posted']:,} of "
                      f"{b5['tasks']:,} tasks posted, **{b5['duplicates']} duplicates**, status `{b5['status']}` "
                      f"after {b5['wall_s']:.1f} s (RQ retried the chunk after its {b5['backoff_s']:.0f} s backoff; "
                      f"{b5['imports']} imports), no person involved. Load {b5['load'][0]:.1f}."]  # fmt: skip
    old = results.get("B1-issue10")
    if old:
        walls = " / ".join(f"{r['wall_s']:.1f}" for r in old["runs"])
        lines += ["", f"Issue 10's run of the old code (`B1-issue10`, {old['started']}): {walls} s with "
                      f"{' / '.join(str(r['workers']) for r in old['runs'])} workers at load "
                      f"{old['load'][0]:.1f}."]  # fmt: skip
    return "\n".join(lines)


# --- the optimiser (bench/optimize.py, bench/prefix.py) and soft rewards -----------------------------------------


def optimizer_table(*files: dict) -> str:
    from bench.optimize import merge_results, table

    return table(merge_results(files))


def labels_first_table(banking77: dict, goemotions: dict, *labels_first: dict) -> str:
    """Instruction first (the product: the issue-13 grid's files) against labels first (``--labels-first`` runs)."""
    from bench.optimize import headline, merge_results, multi_label

    rows = []
    for layout, group in (("instruction first (the product)", (banking77, goemotions)), ("labels first", labels_first)):
        merged, cells = merge_results(group), [layout]
        for name in ("banking77", "goemotions_ekman"):
            ds = merged.get(name, {"runs": {}})
            for method in ("initial", "ours"):
                scores = [headline(multi_label(name, ds), r["test"])
                          for k, r in sorted(ds["runs"].items()) if k.split("/")[0] == method]  # fmt: skip
                cells.append(_mean_sd(scores, method == "ours" and name == "goemotions_ekman", method == "ours"))
        rows.append(tuple(cells))
    header = ("layout", "BANKING77 initial", "BANKING77 ours", "GoEmotions initial", "GoEmotions ours (per seed)")
    return "\n".join(_markdown(header, rows))


def _mean_sd(scores: list[float], per_seed: bool, spread: bool) -> str:
    if not scores:
        return "-"
    text = f"{statistics.mean(scores):.3f}"
    if spread:
        text += f" ± {statistics.stdev(scores) if len(scores) > 1 else 0.0:.3f}"
    if per_seed:
        text += " (" + " ".join(f"{s:.3f}" for s in scores) + ")"
    return text


def rankers_table(results: dict) -> str:
    """What a learned ranker costs to build and to ask, per set, pool size and kind (bench/rankers.py)."""
    header = ("set", "gold", "ranker", "build s", "ms / task (median)", "ms / task (p95)", "model MB", "tasks timed")
    rows = [
        (r["set"], r["gold"], r["ranker"], f"{r['build_s']:.2f}", f"{r['ms_per_task_median']:.3f}",
         f"{r['ms_per_task_p95']:.3f}", f"{r['model_mb']:.2f}", r["tasks_timed"])
        for r in results["rows"]
    ]  # fmt: skip
    load = ", ".join(f"{x:.1f}" for x in results["load_average"])
    goal = f"Goal: at most {results['goal_ms']:g} ms per task; worst median {results['worst_median_ms']:.3f} ms"
    verdict = f"{goal}: **{results['verdict']}** (load average {load} on {results['cpus']} CPUs)."
    return "\n".join([*_markdown(header, rows), "", verdict])


def split_check_table(check: dict, *reports: dict) -> str:
    """BANKING77's first pass: the regression fitted on the loop's 75 training items, on the 25 validation items the
    gate saw and on the 200 test items, beside the LLM's validation score and the ranker candidate's in that run."""
    header = ("seed", "regression on validation (25)", "regression on test (200)", "LLM (initial) on validation",
              "ranker candidate in the run: minibatch / validation / decision")  # fmt: skip
    rows = []
    for report in reports:
        seed = str(report["seed"])
        run = report["run"]
        ranker = next(
            (c for step in run["steps"] for c in step.get("candidates", []) if c["kind"].startswith("ranker:")), {}
        )
        seen = f"{ranker.get('minibatch', '-')} / {ranker.get('val', '-')} / {ranker.get('status', '-')}"
        cells = check["banking77"][seed]
        rows.append((seed, f"{cells['train_fit_on_val']:.3f}", f"{cells['train_fit_on_test']:.3f}",
                     f"{run['initial_val']['reward']:.3f}", seen))  # fmt: skip
    return "\n".join(_markdown(header, rows))


def prefix_table(results: dict) -> str:
    labels = {"no prompt cache": "no prompt cache (the product)", "--cache": "`--cache`",
              "no prompt cache, --labels-first": "no prompt cache, label list *before* the instruction "
                                                 "(measurement only)"}  # fmt: skip
    rows = []
    for name, figures in results["settings"].items():
        naive, loop = figures["naive"], figures["loop"]
        rows.append((labels.get(name, name), f"{statistics.median(naive):.2f} / {statistics.mean(naive):.2f}",
                     f"{statistics.median(loop):.2f} / {statistics.mean(loop):.2f}",
                     f"{statistics.mean(loop) / statistics.mean(naive):.2f}x"))  # fmt: skip
    header = ("server setting", "naive pattern", "optimiser's pattern", "optimiser / naive (mean)")
    note = (
        f"{results['dataset']}, the same {results['items']} items; median / mean s/call; load average "
        f"{results['load'][0]:.1f} before, {results['load_after'][0]:.1f} after; run of {results['started']}."
    )
    return "\n".join([*_markdown(header, rows), "", note])


def soft_rewards_table(results: dict) -> str:
    from bench.soft_rewards import scripted_table

    return scripted_table(results)


def soft_rewards_embedded_table(results: dict) -> str:
    run = results["embedded"]
    rows = []
    for reward in ("hard", "soft"):
        r = run[reward]
        start = r["initial"]
        steps = f"{'yes' if r['promoted'] else 'no'} ({r['steps']} steps)"
        judge = (f"balanced accuracy {start['balanced_accuracy']:.3f}, kappa {start['kappa']:.3f} "
                 f"(graded {start['said_good']:.0%} \"Good\")")  # fmt: skip
        after = f"{r['held_out_balanced_accuracy']:.3f}, {r['held_out_kappa']:.3f}"
        rows.append((reward, judge, after, steps, r["calls"]))
    header = ("reward", "judge default, held out", "after optimisation", "promoted", "calls")
    return "\n".join(_markdown(header, rows))


def judge_choice_table(results: dict) -> str:
    """Issue 22's judge question: which judge the loop chose on a reward-scoring project, scored on held-out grades,
    beside the LLM judge and the reward model alone (trained on all the gold)."""
    runs = results["embedded"]["choose"]
    rows = []
    for seed, run in sorted(runs.items()):
        cells = [seed, f"{run['gold']} / {run['held_out']}"]
        for name in ("chosen", "llm_judge", "reward_model"):
            judge = run[name]
            label = f" ({judge['mode']})" if name == "chosen" else ""
            cells.append(f"{judge['balanced_accuracy']:.3f} / {judge['kappa']:.3f}{label}")
        cells.append(f"{run['chosen']['auroc_good']:.3f}")
        cells.append(run["calls"])
        rows.append(tuple(cells))
    mean = statistics.mean(run["chosen"]["balanced_accuracy"] for run in runs.values())
    header = ("seed", "gold / held out", "chosen judge: balanced accuracy / kappa", "LLM judge", "reward model alone",
              "AUROC of the chosen judge's P(Good)", "calls")  # fmt: skip
    return "\n".join([*_markdown(header, rows), "", f"Chosen judge, mean balanced accuracy over seeds: {mean:.3f}."])


# --- soak (python -m bench.soak) --------------------------------------------------------------------------------


def soak_table(results: dict) -> str:
    s = results["summary"]
    goals = results["goals"]
    rows = [
        ("`/predict` answers that were 5xx", f"{s['predict_5xx']} of {s['predict_requests']:,} "
         f"({s['predict_5xx_share']:.2%})", "(report)", ""),
        ("predictions lost in Label Studio (tasks with none)", s["lost"], "0", verdict(s["lost"] == 0)),
        ("predictions duplicated (a task with two of one version)", s["duplicated"], "0",
         verdict(s["duplicated"] == 0)),
        ("predictions stored empty", s["empty"], "0", verdict(s["empty"] == 0)),
        ("policies half-promoted", s["half_promoted"], "0", verdict(s["half_promoted"] == 0)),
        ("RSS growth, worst process (start → end)", f"{s['rss_growth_worst']:+.1%} ({s['rss_growth_worst_process']})",
         f"< {goals['rss_growth']:.0%}", verdict(s["rss_growth_worst"] < goals["rss_growth"])),
    ]  # fmt: skip
    lines = _markdown(("measure", "measured", "goal", ""), rows)
    rss = [(name, f"{p['start_mb']:.0f} MB", f"{p['end_mb']:.0f} MB", f"{p['growth']:+.1%}")
           for name, p in results["rss"].items()]  # fmt: skip
    lines += ["", *_markdown(("process", "RSS at start", "at end", "growth"), rss)]
    faults = [(f"{f['at_s']:.0f} s", f["fault"], f.get("detail", "")) for f in results["faults"]]
    lines += ["", *_markdown(("at", "event or fault", "what happened"), faults)]
    runs = []
    for job, view in results["jobs"]["final"].items():
        progress = view.get("progress") or {}
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted((progress.get("tasks") or {}).items())) or "-"
        version = (view.get("meta") or {}).get("version") or (view.get("result") or {}).get("candidate") or ""
        detail = view.get("error") or (view.get("result") or {}).get("status") or ""
        runs.append((job, view.get("kind"), version, view.get("status"), outcomes, detail))
    lines += ["", *_markdown(("job", "kind", "version", "status", "tasks by outcome", "detail"), runs)]
    left = results["ctrl_c"]["left_running"]
    ctrl_c = f"left running: {'; '.join(left)}." if left else "nothing left running."
    lines += [
        "",
        f"{results['duration_s'] / 60:.0f} minutes from {results['started']}; {s['traffic']}; load average "
        f"{results['load'][0]:.1f} before, {results['load_after'][0]:.1f} after on {results['cpus']} CPUs. "
        f"`/predict` connections dropped: {s['predict_dropped']}. After Ctrl-C: {ctrl_c}",
    ]
    return "\n".join(lines)


@dataclass(frozen=True)
class Table:
    name: str
    files: tuple[str, ...]  # under bench/results/, handed to ``render`` loaded, in this order
    render: Callable[..., str]
    command: str  # what writes the files

    def text(self, results: Path = RESULTS) -> str:
        missing = [name for name in self.files if not (results / name).is_file()]
        if missing:
            raise FileNotFoundError(f"table {self.name}: bench/results/{missing[0]} is missing; run `{self.command}`")
        loaded = [json.loads((results / name).read_text(encoding="utf-8")) for name in self.files]
        sources = ", ".join(f"`bench/results/{name}`" for name in self.files)
        return f"{self.render(*loaded).rstrip()}\n\n*Generated from {sources} (`{self.command}`).*"


_ISSUE13 = ("issue13-banking77.json", "issue13-gepa-banking77.json", "issue13-goemotions_ekman.json",
            "issue13-gepa-goemotions_ekman.json")  # fmt: skip
_LABELS_FIRST = tuple(
    f"labels-first-{d}{s}.json" for d in ("banking77", "goemotions_ekman") for s in ("", "-s1", "-s2")
)
_ISSUE22 = ("issue22-banking77.json", "issue22-gepa-banking77.json", "issue22-goemotions_ekman.json",
            "issue22-gepa-goemotions_ekman.json")  # fmt: skip
# The second pass: the same files with ``ours`` re-run (later files win run by run in ``merge_results``).
_ISSUE22_WIDENED = ("issue22-banking77.json", "issue22-gepa-banking77.json", "issue22k-banking77.json",
                    "issue22-goemotions_ekman.json", "issue22-gepa-goemotions_ekman.json",
                    "issue22w-goemotions_ekman.json")  # fmt: skip
TABLES = (
    Table("serving", ("serving.json",), serving_table, "python -m bench"),
    Table("optimize-issue3", ("optimize-banking77.json", "optimize-goemotions_ekman.json"), optimizer_table,
          "python -m bench.optimize ... --out bench/results/optimize-<dataset>.json"),
    Table("optimize-issue13", _ISSUE13, optimizer_table,
          "python -m bench.optimize ... --out bench/results/issue13-*.json"),
    Table("optimize-issue22", _ISSUE22, optimizer_table,
          "python -m bench.optimize --datasets D --gold 100 --test 200 --methods initial,knn,linear,ours; then gepa"),
    Table("optimize-issue22-widened", _ISSUE22_WIDENED, optimizer_table,
          "python -m bench.optimize --datasets D --gold 100 --test 200 --methods ours (the second pass)"),
    Table("optimize-issue22-gold50", ("issue22-g50-banking77.json", "issue22-g50-goemotions_ekman.json"),
          optimizer_table, "python -m bench.optimize --datasets D --gold 50 --test 200 --methods linear,ours"),
    Table("optimize-issue22-gold300", ("issue22-g300-goemotions_ekman.json",), optimizer_table,
          "python -m bench.optimize --datasets goemotions_ekman --gold 300 --test 200 --methods linear,ours"),
    Table("rankers", ("rankers.json",), rankers_table, "python -m bench.rankers"),
    Table("issue22-split-check", ("issue22-split-check.json",
          *(f"issue22-reports/banking77-ours-{seed}.json" for seed in range(3))), split_check_table,
          "python -m bench.linear; the reports of the first pass's ours runs"),
    Table("prefix", ("prefix.json",), prefix_table, "python -m bench.prefix"),
    Table("labels-first", ("issue13-banking77.json", "issue13-goemotions_ekman.json", *_LABELS_FIRST),
          labels_first_table, "python -m bench.optimize --labels-first ..."),
    Table("retraining", ("retraining.json",), retraining_table, "python -m bench --only R1,R2"),
    Table("dashboard", ("dashboard.json",), dashboard_table, "python -m bench.dashboard"),
    Table("bulk", ("bulk.json",), bulk_table, "python -m bench.bulk"),
    Table("soak", ("soak.json",), soak_table, "python -m bench.soak"),
    Table("soft-rewards", ("soft_rewards.json",), soft_rewards_table, "python -m bench.soft_rewards"),
    Table("judge-choice", ("judge_choice.json",), judge_choice_table,
          "python -m bench.soft_rewards --embedded-only --embedded-parts choose --choose-gold 200 --embedded-held 200 "
          "--embedded-budget 150 --out bench/results/judge_choice.json"),
    Table("soft-rewards-embedded", ("soft_rewards_embedded.json",), soft_rewards_embedded_table,
          "python -m bench.soft_rewards --embedded-only ..."),
)  # fmt: skip
BY_NAME = {table.name: table for table in TABLES}


def blocks(readme: str) -> dict[str, str]:
    """The README's generated blocks, by table name (a name twice is an error: which one would be checked?)."""
    found: dict[str, str] = {}
    for match in BLOCK.finditer(readme):
        if match.group(1) in found:
            raise ValueError(f"table {match.group(1)!r} appears twice in bench/README.md")
        found[match.group(1)] = match.group(2)
    return found


def stale(readme: str, results: Path = RESULTS) -> list[str]:
    """One line per table whose README block differs from its JSON (or is missing, or names no known table)."""
    present, problems = blocks(readme), []
    for name in present.keys() - BY_NAME.keys():
        problems.append(f"{name}: no such table in bench/tables.py")
    for table in TABLES:
        if table.name not in present:
            problems.append(f"{table.name}: missing from bench/README.md (add <!-- table:{table.name} --> ...)")
        else:
            try:
                fresh = table.text(results)
            except FileNotFoundError as exc:
                problems.append(str(exc))
                continue
            if present[table.name].strip() != fresh.strip():
                problems.append(f"{table.name}: differs from {', '.join(table.files)}")
    return problems


def rewrite(readme: str, results: Path = RESULTS) -> str:
    def fill(match: re.Match) -> str:
        table = BY_NAME.get(match.group(1))
        body = table.text(results) if table else match.group(2)
        return f"<!-- table:{match.group(1)} -->\n{body}\n<!-- /table -->"

    return BLOCK.sub(fill, readme)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tables", description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite the tables in bench/README.md")
    parser.add_argument("--check", action="store_true", help="exit 1 if a table differs from its JSON")
    parser.add_argument("--only", help="comma-separated table names (print only)")
    args = parser.parse_args(argv)
    text = README.read_text(encoding="utf-8")
    if args.write:
        README.write_text(rewrite(text), encoding="utf-8")
    if args.check or args.write:
        problems = stale(README.read_text(encoding="utf-8"))
        for line in problems:
            print(f"stale: {line}", file=sys.stderr)
        if problems:
            print("fix: python -m bench.tables --write (after re-running the benchmark)", file=sys.stderr)
        return 1 if problems else 0
    names = args.only.split(",") if args.only else list(BY_NAME)
    for name in names:
        print(f"<!-- table:{name} -->\n{BY_NAME[name].text()}\n<!-- /table -->\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
