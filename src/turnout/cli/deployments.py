"""`turnout deployments ...`: stable endpoints and their revisions."""

from __future__ import annotations

import orjson
import typer

from turnout.cli.output import JsonOption, pairs, print_json, table
from turnout.cli.rollouts import events_table
from turnout.client import _UNSET, Client
from turnout.types import JSON

app = typer.Typer(help="Create deployments and read their state and history.", no_args_is_help=True)


def _fallback(text: str | None) -> JSON:
    if text is None:
        return _UNSET
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise typer.BadParameter(
            f"--fallback must be JSON (e.g. 0 or '\"unknown\"'): {exc}"
        ) from None


def payload_share(text: str) -> float:
    """`all`, `none`, a fraction (0.1) or a percentage (10%)."""
    words = {"all": 1.0, "none": 0.0}
    if text.lower() in words:
        return words[text.lower()]
    try:
        share = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        share = -1.0
    if not 0.0 <= share <= 1.0:
        raise typer.BadParameter(
            f"--log-payloads must be all, none, a fraction 0..1 or a percentage, not {text!r}"
        )
    return share


@app.command()
def create(
    name: str = typer.Argument(..., help="Deployment name, e.g. churn-prod."),
    model: str = typer.Option(..., help="Model name."),
    version: int = typer.Option(None, help="Champion version (default: latest)."),
    timeout_ms: int = typer.Option(None, help="Request deadline in milliseconds."),
    fallback: str = typer.Option(None, help="JSON value returned per row when no model answers."),
    failover: int = typer.Option(None, help="Version that answers when the champion fails."),
    log_payloads: str = typer.Option(
        "all", help="Log inputs and outputs of: all, none, or a share of requests (e.g. 0.1)."
    ),
    keep_loaded: bool = typer.Option(
        False, "--keep-loaded", help="Pin the champion in memory (never evicted)."
    ),
    isolation: str = typer.Option(
        None, help="shared (runners with other models) or dedicated (a runner of its own)."
    ),
    max_replicas: int = typer.Option(None, help="Runners a hot version may use at most."),
    json: bool = JsonOption,
) -> None:
    """Create a deployment serving MODEL:VERSION behind a stable name."""
    if isolation not in (None, "shared", "dedicated"):
        raise typer.BadParameter(f"--isolation must be shared or dedicated, not {isolation!r}")
    with Client() as client:
        data = client.create_deployment(
            name,
            model=model,
            version=version,
            timeout_ms=timeout_ms,
            failover=failover,
            fallback=_fallback(fallback),
            log_payloads=payload_share(log_payloads),
            keep_loaded=keep_loaded,
            isolation=isolation,
            max_replicas=max_replicas,
        )
    if json:
        print_json(data)
        return
    typer.echo(
        f"deployment {data['name']} serves {data['model']}:{data['champion']} "
        f"(revision {data['revision']})\n"
        f"  OIP:    POST {client.url}{data['endpoints']['oip']}\n"
        f"  native: POST {client.url}{data['endpoints']['native']}"
    )


@app.command("list")
def list_deployments(
    limit: int = typer.Option(100, help="Deployments per page (0: all)."),
    offset: int = typer.Option(0, help="Skip this many, in name order."),
    prefix: str = typer.Option("", help="Only deployments whose name starts with this."),
    json: bool = JsonOption,
) -> None:
    """List deployments and what serves behind them, a page at a time."""
    with Client() as client:
        data = client.list_deployments(limit=limit or None, offset=offset, prefix=prefix)
    if json:
        print_json(data)
        return
    rows = [
        (d["name"], d["model"], d["champion"], d["revision"], d["timeout_ms"], d["updated_at"])
        for d in data
    ]
    table("deployments", ["name", "model", "champion", "revision", "timeout ms", "updated"], rows)
    if limit and len(data) == limit:
        typer.echo(f"(first {limit} from {offset}; more with --offset {offset + limit})")


@app.command()
def show(name: str, json: bool = JsonOption) -> None:
    """Show a deployment's active revision, its workers and its traffic so far."""
    with Client() as client:
        data = client.show_deployment(name)
    if json:
        print_json(data)
        return
    pairs(
        f"deployment {name}",
        [
            ("model", data["model"]),
            ("champion", data["champion"]),
            ("revision", data["revision"]),
            ("challengers", data["challengers"]),
            ("shadows", data["shadows"]),
            ("standby", data["config"]["standby"]),
            ("sticky key", data["config"]["sticky_key"]),
            ("timeout ms", data["timeout_ms"]),
            ("failover", data["failover"]),
            ("fallback", data["fallback"]),
            ("OIP endpoint", data["endpoints"]["oip"]),
            ("native endpoint", data["endpoints"]["native"]),
        ],
    )
    traffic = [
        (t["version"], t["role"], t["requests"], t["errors"], t["dropped"] or "",
         _pct(t["agreement_rate"]), _ms(t["latency_p50_ms"]), _ms(t["latency_p99_ms"]))
        for t in data["traffic"]
    ]  # fmt: skip
    columns = ["version", "role", "requests", "errors", "dropped", "agreement", "p50 ms", "p99 ms"]
    table("traffic since the workers started", columns, traffic)
    breakers = [
        (b["worker"], f"{b['model']}:{b['version']}", b["state"], b["calls"], b["failures"],
         b["opened_total"], b["rejected_total"])
        for b in data.get("breakers", [])
    ]  # fmt: skip
    if breakers:
        columns = ["worker", "version", "breaker", "calls", "failures", "opened", "rejected"]
        table("circuit breakers", columns, breakers)
    workers = [(w["id"], w["revision"], w["heartbeat_age_s"], w["error"]) for w in data["workers"]]
    table("workers", ["worker", "serves revision", "heartbeat age s", "error"], workers)


@app.command()
def delete(name: str) -> None:
    """Delete a deployment; gateways stop serving it within their refresh interval."""
    with Client() as client:
        client.delete_deployment(name)
    typer.echo(f"deleted deployment {name}")


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value:.1%}"


def _ms(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


@app.command()
def history(name: str, json: bool = JsonOption) -> None:
    """List every revision of a deployment, oldest first, then its rollouts' steps and
    verdicts (`turnout rollout history NAME --json` has those as JSON)."""
    with Client() as client:
        data = client.history(name)
        events = [] if json else client.rollout_history(name)
    if json:
        print_json(data)
        return
    rows = []
    for r in data:
        config = r["config"]
        split = ", ".join(f"{v}:{p:g}%" for v, p in config["challengers"].items())
        shadows = ", ".join(f"{v}:{p:g}%" for v, p in config["shadows"].items())
        rows.append((r["revision"], config["champion"], split, shadows, r["reason"],
                     r["created_by"], r["created_at"]))  # fmt: skip
    columns = ["revision", "champion", "challengers", "shadows", "reason", "by", "at"]
    table(f"history of {name}", columns, rows)
    if events:
        events_table(f"rollouts of {name}: steps and verdicts", events)
