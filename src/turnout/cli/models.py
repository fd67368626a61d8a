"""`turnout models ...`: register versions and read the registry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from turnout.cli.output import JsonOption, kv, pairs, print_json, table
from turnout.client import Client
from turnout.registry.names import parse_ref

app = typer.Typer(help="Register model versions and read the registry.", no_args_is_help=True)


def _metrics(values: list[str]) -> dict[str, float]:
    parsed = {}
    for key, value in kv(values, "--metric").items():
        try:
            parsed[key] = float(value)
        except ValueError:
            raise typer.BadParameter(f"metric {key}={value!r} is not a number") from None
    return parsed


@app.command()
def register(
    name: str = typer.Argument(..., help="Model name, e.g. churn."),
    path: str = typer.Argument(
        ...,
        help="Model file or folder, or an MLflow model: models:/NAME@ALIAS, "
        "models:/NAME/VERSION or runs:/RUN_ID/PATH (found through MLFLOW_TRACKING_URI).",
    ),
    flavor: str = typer.Option(..., help="sklearn, onnx, xgboost, lightgbm, mlflow or python."),
    metric: list[str] = typer.Option([], help="Training metric k=v (repeatable)."),
    param: list[str] = typer.Option([], help="Training parameter k=v (repeatable)."),
    tag: list[str] = typer.Option([], help="Tag k=v (repeatable)."),
    description: str = typer.Option("", help="Free-text description."),
    training_data: Path = typer.Option(None, help="CSV/Parquet training data (baseline stats)."),
    target: str = typer.Option(None, help="Target column in the training data."),
    parent: int = typer.Option(None, help="Parent version (lineage)."),
    pipeline: str = typer.Option(
        None,
        help="Training pipeline for retraining: pkg.module:fit (importable on the server) or "
        "a Python file, train.py or train.py:function (uploaded). It is called as "
        "fit(DataFrame, params) with this version's --param values.",
    ),
    json: bool = JsonOption,
) -> None:
    """Register a new immutable version of NAME from PATH (a local model or an MLflow one)."""
    with Client() as client:
        record = client.register(
            name,
            path,
            flavor=flavor,
            metrics=_metrics(metric),
            params=kv(param, "--param"),
            tags=kv(tag, "--tag"),
            description=description,
            training_data=training_data,
            target=target,
            parent_version=parent,
            pipeline=pipeline,
        )
    if json:
        print_json(record)
        return
    typer.echo(f"registered {record['ref']} ({record['flavor']}, {record['size_bytes']} bytes)")


@app.command("list")
def list_models(json: bool = JsonOption) -> None:
    """List models with their number of versions."""
    with Client() as client:
        models = client.list_models()
    if json:
        print_json(models)
        return
    rows = [(m["name"], m["versions"], m["latest_version"], m["created_at"]) for m in models]
    table("models", ["name", "versions", "latest", "created"], rows)


@app.command()
def show(
    ref: str = typer.Argument(..., help="NAME or NAME:VERSION."),
    lineage: bool = typer.Option(False, "--lineage", help="Show the version's ancestors."),
    json: bool = JsonOption,
) -> None:
    """Show a model's versions, or one version in full."""
    name, version = parse_ref(ref)
    with Client() as client:
        if version is None:
            data = client.show_model(name)
        elif lineage:
            data = client.lineage(name, version)
        else:
            data = client.show_version(name, version)
    if json:
        print_json(data)
        return
    rows: list[tuple[object, ...]]
    if version is None:
        rows = [
            (v["version"], v["flavor"], _short(v["metrics"]), v["created_by"], v["created_at"],
             v.get("archived_at"))
            for v in data["version_list"]
        ]  # fmt: skip
        columns = ["version", "flavor", "metrics", "by", "created", "archived"]
        table(f"model {name}", columns, rows)
    elif lineage:
        rows = [_lineage_row(v) for v in data]
        table(
            f"lineage of {ref} (newest first)",
            [
                "version",
                "parent",
                "job",
                "trigger",
                "data fingerprint",
                "rows",
                "metrics",
                "created",
            ],
            rows,
        )
    else:
        _show_version(data)


@app.command()
def archive(ref: str = typer.Argument(..., help="NAME:VERSION.")) -> None:
    """Archive a version: it stays readable but is never newly deployed or routed."""
    name, version = parse_ref(ref)
    if version is None:
        raise typer.BadParameter("give the version to archive as NAME:VERSION")
    with Client() as client:
        client.archive_version(name, version)
    typer.echo(f"archived {name}:{version}")


@app.command()
def delete(
    ref: str = typer.Argument(..., help="NAME (the model and every version) or NAME:VERSION."),
) -> None:
    """Delete a version, or a model with all its versions (refused while deployed)."""
    name, version = parse_ref(ref)
    with Client() as client:
        if version is None:
            client.delete_model(name)
        else:
            client.delete_version(name, version)
    typer.echo(f"deleted {ref}")


def _short(values: dict[str, object]) -> str:
    return ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items()
    )


def _lineage_row(version: dict[str, Any]) -> tuple[object, ...]:
    """One link of the chain: what made the version (job, trigger, data) and its scores."""
    lineage = version.get("lineage") or {}
    training = version.get("training") or {}
    fingerprint = lineage.get("data_fingerprint") or training.get("fingerprint")
    rows = lineage.get("rows")
    shown_rows = (
        ", ".join(f"{k} {v}" for k, v in rows.items())
        if isinstance(rows, dict)
        else training.get("rows")
    )
    return (
        version["ref"],
        version["parent_version"],
        lineage.get("job"),
        lineage.get("trigger") or ("registered" if version["parent_version"] is None else None),
        str(fingerprint)[:16] if fingerprint else None,
        shown_rows,
        _short(version.get("metrics") or {}),
        version["created_at"][:19],
    )


def _pipeline(record: object) -> str | None:
    if not isinstance(record, dict):
        return None
    if record.get("kind") == "file":
        return f"{record.get('name')}:{record.get('function')} ({str(record.get('sha256'))[:12]})"
    return str(record.get("ref"))


def _show_version(data: dict[str, object]) -> None:
    signature = data["signature"]
    assert isinstance(signature, dict)
    training = data.get("training") or {}
    assert isinstance(training, dict)
    pairs(
        f"version {data['ref']}",
        [
            ("flavor", data["flavor"]),
            ("description", data["description"]),
            ("files", ", ".join(f"{f['path']} ({f['sha256'][:12]})" for f in data["files"])),  # type: ignore[attr-defined]
            ("inputs", f"{len(signature['inputs'])} columns"),
            ("classes", signature.get("classes")),
            ("metrics", data["metrics"]),
            ("params", data["params"]),
            ("tags", data["tags"]),
            ("training rows", training.get("rows")),
            ("data fingerprint", training.get("fingerprint")),
            ("pipeline", _pipeline(data.get("pipeline"))),
            ("parent version", data["parent_version"]),
            ("created", f"{data['created_at']} by {data['created_by']}"),
        ],
    )
