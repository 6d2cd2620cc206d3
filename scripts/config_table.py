"""Print the configuration table (markdown) from :class:`optimizer.settings.Settings`.

``docs/configuration.md`` keeps the output between ``<!-- config-table:start -->`` and ``<!-- config-table:end -->``;
``tests/test_config_table.py`` fails when the two differ, so the table cannot drift from the code.
``--write docs/configuration.md`` replaces it in place.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pydantic import AliasChoices, SecretStr  # noqa: E402

from optimizer.settings import Settings  # noqa: E402

START, END = "<!-- config-table:start -->", "<!-- config-table:end -->"


def _default(value) -> str:
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if value is None:
        value = ""
    if isinstance(value, bool):
        value = "1" if value else "0"
    text = str(value)
    return f"`{text}`" if text else "(empty)"


def table() -> str:
    rows = ["| Variable | Default | Description |", "| --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        names = [str(c) for c in alias.choices] if isinstance(alias, AliasChoices) else [name.upper()]
        variable = " / ".join(f"`{n}`" for n in names)
        description = (field.description or "").replace("|", "\\|")
        rows.append(f"| {variable} | {_default(field.default)} | {description} |")
    return "\n".join(rows) + "\n"


def section(text: str) -> str | None:
    """The table currently between the markers in ``text``, or None when the markers are missing."""
    if START not in text or END not in text:
        return None
    return text.split(START, 1)[1].split(END, 1)[0].strip("\n") + "\n"


def write(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    if section(text) is None:
        raise SystemExit(f"{path}: add the markers {START} and {END} where the table goes")
    head, rest = text.split(START, 1)
    tail = rest.split(END, 1)[1]
    path.write_text(f"{head}{START}\n{table()}{END}{tail}", encoding="utf-8")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--write":
        write(Path(sys.argv[2]))
    else:
        sys.stdout.write(table())
