"""`turnout tokens ...`: API tokens with roles, permissions, scopes and expiry (admin only)."""

from __future__ import annotations

import typer

from turnout.cli.output import JsonOption, print_json, table
from turnout.client import Client

app = typer.Typer(
    help="Create, list and revoke API tokens (needs an admin token).", no_args_is_help=True
)


@app.command()
def create(
    name: str,
    role: str = typer.Option("viewer", help="predictor, viewer, deployer or admin."),
    allow: list[str] = typer.Option(
        [], "--allow", help="Extra permission beyond the role: register-code."
    ),
    deployment: list[str] = typer.Option(
        [], "--deployment", help="Only this deployment may be called (repeatable)."
    ),
    expires_in: str | None = typer.Option(
        None, "--expires-in", help="Lifetime such as 30d, 12h or 90m (default: until revoked)."
    ),
    json: bool = JsonOption,
) -> None:
    """Create a token; it is shown once."""
    with Client() as client:
        data = client.create_token(
            name,
            role,
            permissions=allow,
            deployments=deployment or None,
            expires_in=expires_in,
        )
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
    rows = [
        (
            t["id"],
            t["name"],
            t["role"],
            ", ".join(t.get("permissions") or []),
            "all" if t.get("deployments") is None else ", ".join(t["deployments"]),
            t["created_at"],
            t.get("expires_at"),
            t["revoked_at"],
        )
        for t in data
    ]
    columns = ["id", "name", "role", "permissions", "deployments", "created", "expires", "revoked"]
    table("tokens", columns, rows)


@app.command()
def revoke(token_id: int = typer.Argument(..., metavar="ID")) -> None:
    """Revoke a token at once (prediction gateways stop accepting it within 5 s)."""
    with Client() as client:
        client.revoke_token(token_id)
    typer.echo(f"token {token_id} revoked")
