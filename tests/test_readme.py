"""The README's settings table names every setting turnout reads from the environment."""

from __future__ import annotations

import re
from pathlib import Path

from turnout.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
NAME = re.compile(r"`(TURNOUT_[A-Z0-9_]+)`")
READ_FROM_ENVIRON = re.compile(r"environ(?:\.get\(|\[)\"(TURNOUT_[A-Z0-9_]+)\"")


def table_names(readme: str) -> set[str]:
    """Variables in the first column of the table under `## Configuration`."""
    section = readme.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `TURNOUT_")]
    return {name for row in rows for name in NAME.findall(row.split("|")[1])}


def settings_names() -> set[str]:
    """Every field of `Settings`, and variables the code reads from the environment itself."""
    prefix = Settings.model_config.get("env_prefix", "")
    fields = {f"{prefix}{name}".upper() for name in Settings.model_fields}
    sources = (ROOT / "src" / "turnout").rglob("*.py")
    direct = {name for path in sources for name in READ_FROM_ENVIRON.findall(path.read_text())}
    return fields | direct


def test_every_setting_is_in_the_readme_table() -> None:
    missing = settings_names() - table_names((ROOT / "README.md").read_text())
    assert not missing, f"README's settings table lacks {sorted(missing)}"


def test_the_table_names_no_setting_that_does_not_exist() -> None:
    unknown = table_names((ROOT / "README.md").read_text()) - settings_names()
    assert not unknown, f"README's settings table names unknown {sorted(unknown)}"


def test_a_row_may_name_several_settings() -> None:
    readme = "\n## Configuration\n\n| `TURNOUT_HOST`, `TURNOUT_PORT` | `8700` | `TURNOUT_X` |\n"
    assert table_names(readme) == {"TURNOUT_HOST", "TURNOUT_PORT"}
