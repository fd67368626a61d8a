"""`turnout audit`: who did what, newest first (needs an admin token)."""

from __future__ import annotations

import orjson
import typer

from turnout.cli.output import JsonOption, print_json, table
from turnout.client import Client


def audit(
    since: str | None = typer.Option(None, help="How far back: 1h, 7d, or an ISO time."),
    actor: str | None = typer.Option(None, help="Only what this token name did."),
    action: str | None = typer.Option(None, help="Action prefix, e.g. token. or rollout.start"),
    target: str | None = typer.Option(None, help="Only entries about this name."),
    limit: int = typer.Option(100, min=1, max=1000, help="At most this many entries."),
    json: bool = JsonOption,
) -> None:
    """Read the audit log."""
    with Client() as client:
        entries = client.audit(since=since, actor=actor, action=action, target=target, limit=limit)
    if json:
        print_json(entries)
        return
    rows = [
        (e["id"], e["at"], e["actor"], e["action"], e["target"], orjson.dumps(e["detail"]).decode())
        for e in entries
    ]
    table("audit", ["id", "at", "actor", "action", "target", "detail"], rows)
