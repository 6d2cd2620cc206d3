"""docs/configuration.md's table of settings is exactly what ``scripts/config_table.py`` generates from ``Settings``."""

from __future__ import annotations

import subprocess
import sys

from optimizer.settings import Settings
from scripts.config_table import END, START, section, table
from testkit.backendprocess import ROOT


def test_every_setting_is_documented():
    undocumented = [name for name, field in Settings.model_fields.items() if not (field.description or "").strip()]
    assert undocumented == []
    rows = table().splitlines()[2:]
    assert len(rows) == len(Settings.model_fields)


def test_script_prints_the_table():
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "config_table.py")], capture_output=True, text=True, check=True
    ).stdout
    assert out == table()
    assert "| `RQ_QUEUE` | `lsml-train` |" in out


def test_documented_table_matches_settings():
    """The page is in the repository, so a missing page or missing markers fail (they are not a missing component)."""
    page = ROOT / "docs" / "configuration.md"
    current = section(page.read_text(encoding="utf-8"))
    assert current is not None, f"docs/configuration.md has no {START} ... {END} section"
    assert current == table(), (
        "docs/configuration.md's configuration table is stale: run python scripts/config_table.py --write "
        "docs/configuration.md"
    )
