"""bench/README.md's figures come from the JSON the benchmarks commit under bench/results/, through bench/tables.py.

A table copied by hand, or left behind when a benchmark was re-run, fails here; so does a figure table outside the
generated blocks (only tables that describe what is measured may be written by hand).
"""

from __future__ import annotations

import json
import re
import shutil

from bench.tables import README, RESULTS, TABLES, blocks, main, rewrite, stale

# Tables in bench/README.md that hold no measured figure: what each benchmark measures and how, the methods compared.
DESCRIPTIVE_HEADERS = {"| | what is measured | how |", "| method | what |"}


def readme() -> str:
    return README.read_text(encoding="utf-8")


def test_every_table_matches_its_json():
    problems = stale(readme())
    assert not problems, "\n".join(problems) + "\nregenerate: python -m bench.tables --write"


def test_every_table_is_in_the_readme_once_and_its_files_are_committed():
    present = blocks(readme())
    assert set(present) == {t.name for t in TABLES}
    for table in TABLES:
        for name in table.files:
            assert (RESULTS / name).is_file(), f"bench/results/{name} (for table {table.name}) is missing"
    ignored = (RESULTS.parent.parent / ".gitignore").read_text()
    assert "bench/results/*.json" not in ignored and "bench/results.json" not in ignored


def test_a_changed_figure_makes_its_table_stale(tmp_path):
    """The check can fail: one number changed in one committed file flags exactly that file's tables."""
    copied = tmp_path / "results"
    shutil.copytree(RESULTS, copied)
    assert stale(readme(), copied) == []
    serving = json.loads((copied / "serving.json").read_text())
    serving["P1"]["wall_s"] += 0.5
    (copied / "serving.json").write_text(json.dumps(serving))
    assert [line.split(":")[0] for line in stale(readme(), copied)] == ["serving"]
    fixed = rewrite(readme(), copied)
    assert stale(fixed, copied) == [] and fixed != readme()


def test_no_figure_table_is_written_by_hand():
    outside = re.sub(r"<!-- table:[\w-]+ -->.*?<!-- /table -->", "", readme(), flags=re.DOTALL)
    lines = outside.splitlines()
    headers = [line.strip() for i, line in enumerate(lines) if line.strip().startswith("|")
               and not (i and lines[i - 1].strip().startswith("|"))]  # fmt: skip
    assert set(headers) <= DESCRIPTIVE_HEADERS, f"tables outside bench/tables.py: {set(headers) - DESCRIPTIVE_HEADERS}"


def test_check_command_exits_non_zero_on_a_stale_table(tmp_path, monkeypatch, capsys):
    stale_readme = tmp_path / "README.md"
    stale_readme.write_text(readme().replace("<!-- table:serving -->\n", "<!-- table:serving -->\n| 0 |\n", 1))
    monkeypatch.setattr("bench.tables.README", stale_readme)
    assert main(["--check"]) == 1 and "stale: serving" in capsys.readouterr().err
    monkeypatch.setattr("bench.tables.README", README)
    assert main(["--check"]) == 0
