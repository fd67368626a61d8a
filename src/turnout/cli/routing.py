"""`turnout route | promote | rollback`: change what answers behind a deployment."""

from __future__ import annotations

import typer

from turnout.cli.deployments import payload_share
from turnout.cli.output import console, print_json, table
from turnout.client import Client
from turnout.types import JSON


def _shares(values: list[str], what: str, *, default: float | None) -> dict[int, float]:
    """`V=PCT` (or `V` when a default share exists) as {version: percent}."""
    shares = {}
    for item in values:
        version, sep, percent = item.partition("=")
        if not version.isdigit() or (not sep and default is None):
            raise typer.BadParameter(f"{what} {item!r} must look like VERSION=PERCENT")
        try:
            shares[int(version)] = float(percent) if sep else float(default or 0)
        except ValueError:
            raise typer.BadParameter(f"{what} {item!r}: {percent!r} is not a number") from None
    return shares


def _report(applied: dict[str, JSON], what: str) -> None:
    workers = applied["workers"]
    assert isinstance(workers, list)
    served = sum(1 for w in workers if w["revision"] == applied["revision"])
    console.print(
        f"{what}: {applied['deployment']} is at revision {applied['revision']} "
        f"({applied['reason']}); {served}/{len(workers)} workers serve it",
        highlight=False,
    )
    if not applied["acknowledged"]:
        rows = [(w["id"], w["revision"], w["error"] or "") for w in workers]
        table("workers not yet serving it", ["worker", "revision", "error"], rows)
        raise typer.Exit(2)


def route(
    name: str = typer.Argument(..., help="Deployment name."),
    challenger: list[str] = typer.Option([], help="VERSION=PERCENT of live traffic (repeatable)."),
    shadow: list[str] = typer.Option([], help="VERSION[=PERCENT] gets a copy of live traffic."),
    sticky: str = typer.Option(
        None, help="header:NAME or field:NAME keeps each key on one version."
    ),
    clear: bool = typer.Option(False, "--clear", help="Drop every challenger and shadow first."),
    log_payloads: str = typer.Option(
        None, help="Log inputs and outputs of: all, none, or a share of requests (e.g. 0.1)."
    ),
    json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
) -> None:
    """Split traffic between the champion and challengers, or mirror it to shadows."""
    with Client() as client:
        applied = client.route(
            name,
            challengers=_shares(challenger, "--challenger", default=None),
            shadows=_shares(shadow, "--shadow", default=100.0),
            sticky_key=sticky,
            clear=clear,
            log_payloads=None if log_payloads is None else payload_share(log_payloads),
        )
    if json:
        print_json(applied)
    _report(applied, "routed")


def promote(
    name: str = typer.Argument(..., help="Deployment name."),
    version: int = typer.Option(..., help="Version to make champion."),
    json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
) -> None:
    """Blue-green switch to VERSION; the old champion stays loaded as standby."""
    with Client() as client:
        applied = client.promote(name, version=version)
    if json:
        print_json(applied)
    _report(applied, "promoted")


def rollback(
    name: str = typer.Argument(..., help="Deployment name."),
    to_revision: int = typer.Option(None, help="Revision to return to (default: the previous)."),
    json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
) -> None:
    """Re-activate an earlier revision; it becomes a new revision in the history."""
    with Client() as client:
        applied = client.rollback(name, to_revision=to_revision)
    if json:
        print_json(applied)
    _report(applied, "rolled back")
