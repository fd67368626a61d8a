"""`turnout apply -f FILE`: declare a deployment in YAML; only what differs is changed."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from turnout.cli.output import JsonOption, console, print_json
from turnout.client import Client


def apply(
    file: Path = typer.Option(..., "--file", "-f", help="YAML deployment spec; - reads stdin."),
    json: bool = JsonOption,
) -> None:
    """Create a deployment from a spec, or bring an existing one to it (same spec twice:
    nothing changes)."""
    if str(file) == "-":
        text = sys.stdin.read()
    elif file.is_file():
        text = file.read_text()
    else:
        raise typer.BadParameter(f"{file} is not a file")
    with Client() as client:
        report = client.apply(text)
    if json:
        print_json(report)
        return
    name, revision = report["deployment"], report["revision"]
    if report["created"]:
        line = f"{name} created at revision {revision}"
    elif report["changed"]:
        line = f"{name} changed ({', '.join(report['changed'])}), now at revision {revision}"
    else:
        line = f"{name} unchanged at revision {revision}"
    if report["rollout"] is not None:
        verb = "started" if "version" in report["changed"] else "in progress"
        line += f"; rollout {report['rollout']} {verb} (turnout rollout status {name})"
    if report.get("acknowledged") is False:
        line += "; not every gateway serves it yet"
    console.print(line, highlight=False)
