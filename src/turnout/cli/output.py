"""How the CLI prints: Rich tables for people, `--json` for programs, errors on stderr."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson
import typer
from rich.console import Console
from rich.table import Table

console = Console()
errors = Console(stderr=True)

JsonOption = typer.Option(False, "--json", help="Print machine-readable JSON.")


def print_json(data: Any) -> None:
    typer.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    out = Table(title=title, title_justify="left")
    for column in columns:
        out.add_column(column)
    for row in rows:
        out.add_row(*("" if v is None else str(v) for v in row))
    console.print(out)


def pairs(title: str, items: Iterable[tuple[str, Any]]) -> None:
    out = Table(title=title, title_justify="left", show_header=False)
    out.add_column("field", style="bold")
    out.add_column("value")
    for key, value in items:
        if isinstance(value, dict | list):
            value = orjson.dumps(value).decode()
        out.add_row(key, "" if value is None else str(value))
    console.print(out)


def kv(values: list[str], what: str) -> dict[str, str]:
    """`k=v` options as a dict, refusing anything without `=`."""
    parsed = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{what} {item!r} must look like key=value")
        parsed[key] = value
    return parsed
