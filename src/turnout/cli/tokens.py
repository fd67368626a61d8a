"""`turnout tokens ...`: API tokens with roles (admin only)."""

from __future__ import annotations

import typer

from turnout.cli.output import JsonOption, print_json, table
from turnout.client import Client

app = typer.Typer(help="Create and list API tokens (needs an admin token).", no_args_is_help=True)


@app.command()
def create(
    name: str,
    role: str = typer.Option("viewer", help="viewer, deployer or admin."),
    json: bool = JsonOption,
) -> None:
    """Create a token; it is shown once."""
    with Client() as client:
        data = client.create_token(name, role)
    if json:
        print_json(data)
        return
    typer.echo(f"token {data['name']} ({data['role']}): {data['token']}")


@app.command("list")
def list_tokens(json: bool = JsonOption) -> None:
    """List tokens (never their secrets)."""
    with Client() as client:
        data = client.list_tokens()
    if json:
        print_json(data)
        return
    rows = [(t["id"], t["name"], t["role"], t["created_at"], t["revoked_at"]) for t in data]
    table("tokens", ["id", "name", "role", "created", "revoked"], rows)
