"""`turnout rollout ...`: move a version into production through gates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from turnout.cli.output import JsonOption, console, pairs, print_json, table
from turnout.client import Client

app = typer.Typer(help="Move a version into production through gates.", no_args_is_help=True)


def _show(data: dict[str, Any]) -> None:
    marks = [escape(f"[{s}]") if s == data["step"] else s for s in data["steps"]]
    pairs(
        f"rollout {data['id']} of {data['deployment']}: version {data['version']}",
        [
            ("state", data["state"]),
            ("step", data["step"]),
            ("plan", " -> ".join(marks)),
            ("started", f"{data['created_at']} by {data['created_by']}"),
            ("reason", data["reason"] or None),
        ],
    )
    verdicts = data.get("verdicts") or {}
    if verdicts:
        table(
            "gates",
            ["step", "verdict", "reason"],
            [(s, v.get("outcome"), v.get("reason")) for s, v in verdicts.items()],
        )
    table(
        "events",
        ["at", "step", "event"],
        [(e["at"][:19], e["step"], e["kind"]) for e in data.get("events", [])[-15:]],
    )


@app.command()
def start(
    name: str = typer.Argument(..., help="Deployment name."),
    version: int = typer.Option(..., help="Version to move into production."),
    plan: Path = typer.Option(None, help="YAML plan file (default: the built-in plan)."),
    json: bool = JsonOption,
) -> None:
    """Start a rollout: warm-up in shadow, challenge on live traffic, promote, bake."""
    text = None
    if plan is not None:
        if not plan.is_file():
            raise typer.BadParameter(f"{plan} is not a file")
        text = plan.read_text()
    with Client() as client:
        data = client.start_rollout(name, version=version, plan=text)
    if json:
        print_json(data)
        return
    console.print(
        f"rollout {data['id']} of {name}: version {data['version']} starts at step "
        f"{data['step']} ({' -> '.join(data['steps'])})",
        highlight=False,
    )


@app.command()
def status(
    name: str = typer.Argument(..., help="Deployment name."), json: bool = JsonOption
) -> None:
    """The deployment's latest rollout: step, gate verdicts with their evidence, events."""
    with Client() as client:
        data = client.rollout_status(name)
    if json:
        print_json(data)
        return
    _show(data)


@app.command()
def approve(
    name: str = typer.Argument(..., help="Deployment name."), json: bool = JsonOption
) -> None:
    """Let a rollout waiting at its approval step go on to promotion."""
    with Client() as client:
        data = client.approve_rollout(name)
    if json:
        print_json(data)
        return
    console.print(f"approved: the rollout of {name} goes on to {data['step']}", highlight=False)


@app.command()
def abort(
    name: str = typer.Argument(..., help="Deployment name."),
    reason: str = typer.Option("", help="Why, for the history."),
    json: bool = JsonOption,
) -> None:
    """Stop the rollout; live traffic goes back to the champion at once."""
    with Client() as client:
        data = client.abort_rollout(name, reason=reason)
    if json:
        print_json(data)
        return
    console.print(f"aborted: {name} serves its champion again", highlight=False)


@app.command()
def history(
    name: str = typer.Argument(..., help="Deployment name."), json: bool = JsonOption
) -> None:
    """Every step, verdict, approval and abort of every rollout of the deployment."""
    with Client() as client:
        data = client.rollout_history(name)
    if json:
        print_json(data)
        return
    events_table(f"rollouts of {name}", data)


def events_table(title: str, events: list[dict[str, Any]]) -> None:
    """One row per rollout event: when, which rollout and version, the step, what happened
    and why (a verdict's reason, who approved, what superseded it)."""
    table(
        title,
        ["at", "rollout", "version", "step", "event", "why"],
        [
            (e["at"][:19], e["rollout"], e["version"], e["step"], e["kind"], _why(e["detail"]))
            for e in events
        ],
    )


def _why(detail: Any) -> str:
    if not isinstance(detail, dict):
        return ""
    if detail.get("reason"):
        return str(detail["reason"])
    if detail.get("by"):
        return f"by {detail['by']}"
    if detail.get("by_version"):
        return f"by version {detail['by_version']}"
    if detail.get("steps"):
        return " -> ".join(map(str, detail["steps"]))
    return ""
