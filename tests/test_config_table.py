"""The README's configuration table is exactly what ``scripts/config_table.py`` generates from ``Settings``."""

from __future__ import annotations

import subprocess
import sys

from optimizer.settings import Settings
from scripts.config_table import END, START, section, table
from testkit.backendprocess import ROOT
from tests.support.gating import need


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


def test_readme_table_matches_settings():
    readme = ROOT / "README.md"
    current = section(readme.read_text(encoding="utf-8")) if readme.exists() else None
    need(current is not None, f"README.md has no {START} ... {END} section yet")
    assert current == table(), (
        "README configuration table is stale: run python scripts/config_table.py --write README.md"
    )
