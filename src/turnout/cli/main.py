"""The `turnout` entry point: wires the verb groups and turns errors into clean messages."""

from __future__ import annotations

import sys

import typer

from turnout.cli import (
    apply,
    audit,
    batch,
    deployments,
    models,
    monitoring,
    quickstart,
    retrain,
    rollouts,
    routing,
    serve,
    tokens,
)
from turnout.cli.output import errors
from turnout.errors import TurnoutError

app = typer.Typer(
    name="turnout",
    help="Production ML model lifecycle management.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command()(serve.serve)
app.command()(quickstart.quickstart)
app.command()(routing.route)
app.command()(routing.promote)
app.command()(routing.rollback)
app.command()(apply.apply)
app.command()(monitoring.actuals)
app.command()(monitoring.status)
app.add_typer(models.app, name="models")
app.add_typer(deployments.app, name="deployments")
app.add_typer(tokens.app, name="tokens")
app.command()(audit.audit)
app.add_typer(rollouts.app, name="rollout")
app.command()(retrain.retrain)
app.add_typer(retrain.policy_app, name="retrain-policy")
app.add_typer(retrain.jobs_app, name="jobs")
app.command()(batch.batch)


def main() -> None:
    try:
        app()
    except TurnoutError as exc:
        errors.print(f"[red]error:[/red] {exc.message}", highlight=False)
        sys.exit(1)
