"""`turnout actuals` and `turnout status`: ground truth in, production health out."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import typer
from rich.console import Console
from rich.measure import Measurement
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from turnout.cli.output import JsonOption, console, print_json, table
from turnout.client import Client
from turnout.monitoring.groups import GroupStats

BATCH_ROWS = 10_000
SHOWN = 20


def _read(path: Path) -> pd.DataFrame:
    """The file as strings (CSV) or typed values (Parquet), with the two needed columns."""
    if not path.is_file():
        raise typer.BadParameter(f"{path} is not a file")
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        elif suffix in (".csv", ".txt", ".gz"):
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        else:
            raise typer.BadParameter(f"{path.name}: expected a .csv or .parquet file")
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise typer.BadParameter(f"cannot read {path.name}: {exc}") from None
    missing = [c for c in ("prediction_id", "actual") if c not in frame.columns]
    if missing:
        raise typer.BadParameter(
            f"{path.name} has no column {', '.join(missing)} (columns: "
            f"{', '.join(map(str, frame.columns))}); expected prediction_id,actual"
        )
    return frame[["prediction_id", "actual"]]


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON rows; numpy scalars (Parquet) become plain values, empty cells (CSV) None."""
    frame = frame.astype(object).where(frame.notna(), None)

    def plain(value: Any) -> Any:
        value = value.item() if hasattr(value, "item") else value
        return None if value == "" else value

    return [
        {"prediction_id": plain(pid), "actual": plain(actual)}
        for pid, actual in zip(frame["prediction_id"], frame["actual"], strict=True)
    ]


def actuals(
    name: str = typer.Argument(..., help="Deployment name."),
    file: Path = typer.Argument(..., help="CSV or Parquet file with prediction_id,actual."),
    json: bool = JsonOption,
) -> None:
    """Send ground truth for earlier predictions (idempotent: an id sent again is replaced)."""
    rows = _records(_read(file))
    report: dict[str, Any] = {"accepted": 0, "replaced": 0, "unknown": [], "rejected": []}
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Client() as client, Progress(*columns, console=console, disable=json) as progress:
        task = progress.add_task(f"actuals for {name}", total=len(rows))
        for start in range(0, len(rows), BATCH_ROWS):
            part = client.post_actuals(name, rows[start : start + BATCH_ROWS])
            report["accepted"] += part["accepted"]
            report["replaced"] += part["replaced"]
            report["unknown"] += part["unknown"]
            report["rejected"] += [{**r, "index": r["index"] + start} for r in part["rejected"]]
            progress.advance(task, min(BATCH_ROWS, len(rows) - start))
    if json:
        print_json(report)
    else:
        console.print(
            f"{report['accepted']} actuals stored for {name} ({report['replaced']} replaced "
            f"earlier ones); {len(report['unknown'])} unknown prediction ids; "
            f"{len(report['rejected'])} rows rejected",
            highlight=False,
        )
        problems = [
            (r["index"] + 2, r.get("prediction_id"), r["error"]) for r in report["rejected"]
        ] + [("", i, "unknown prediction id") for i in report["unknown"]]
        if problems:
            table(
                f"rows not stored (first {min(SHOWN, len(problems))} of {len(problems)})",
                ["line", "prediction id", "problem"],
                problems[:SHOWN],
            )
    if rows and report["accepted"] == 0:
        raise typer.Exit(1)


def _ms(value: Any) -> str:
    return "" if value is None else f"{value:.2f}"


def _pct(value: Any) -> str:
    return "" if value is None else f"{100 * value:.1f}%"


def _metric(metric: Any, *, percent: bool) -> str:
    if not metric:
        return ""
    show = _pct if percent else (lambda v: f"{v:.3g}")
    return f"{show(metric['value'])} ({show(metric['ci_low'])}-{show(metric['ci_high'])})"


def _quality(performance: Any) -> tuple[str, str]:
    """(metric name, value with 95% interval) for the table's quality column."""
    if not performance or not performance.get("n"):
        return "", ""
    if performance.get("task") == "classification":
        return "acc", _metric(performance.get("accuracy"), percent=True)
    if performance.get("task") == "regression":
        return "MAE", _metric(performance.get("mae"), percent=False)
    return "", ""


def _drift(drift: Any) -> str:
    if not drift:
        return ""
    if not drift.get("baseline"):
        return "no baseline"
    features = drift.get("features") or {}
    judged = [f for f in features.values() if f.get("level") != "insufficient"]
    if not judged:
        return f"too few rows ({drift.get('rows', 0)})"
    text = f"{len(drift.get('drifted') or [])}/{len(judged)}"
    prediction = drift.get("prediction")
    if prediction and prediction.get("level") in ("major", "moderate"):
        text += f", output {prediction['level']}"
    return text


def status(
    name: str = typer.Argument(..., help="Deployment name."),
    window: str = typer.Option("24h", help="How far back: 15m, 1h, 24h, 7d ... or all."),
    json: bool = JsonOption,
) -> None:
    """Per version and role: traffic, latency, errors, fallbacks, accuracy and drift."""
    with Client() as client:
        data = client.metrics(name, window=window)
    if json:
        print_json(data)
        return
    render_status(data)


def render_status(data: dict[str, Any], *, out: Console = console) -> None:
    """The status tables of one deployment's metrics (the API's /metrics answer), laid out
    for `out`'s width: one table when it fits, else traffic and quality apart, else one
    small table per group (nothing is ever cut to "vers…")."""
    name = data["deployment"]
    drift = data["drift"]
    groups = [GroupStats.from_dict(g) for g in data["groups"]]
    title = f"{name} ({data['model']}), last {data['window']}"
    _print_fitting(out, _layouts(title, groups, drift))
    out.print(
        "failed: errors and timeouts (a failover or fallback may still have answered); "
        "drifted features: features whose live inputs moved from the training data (PSI and "
        "KS/chi-square), of those with enough rows",
        style="dim",
    )
    if not groups:
        out.print(f"no predictions logged for {name} in the last {data['window']}")
    for version, info in sorted(drift.items(), key=lambda kv: int(kv[0])):
        features = info.get("features") or {}
        flagged = sorted(
            ((k, f) for k, f in features.items() if f.get("level") in ("major", "moderate")),
            key=lambda kf: -(kf[1].get("psi") or 0.0),
        )
        if flagged:
            out.print(_table(
                f"drift of version {version} against its training data",
                ["feature", "PSI", "test", "statistic", "p-value", "level"],
                [
                    (k, f"{f['psi']:.3f}", f["test"], _num(f.get("statistic")),
                     _num(f.get("p_value")), f["level"])
                    for k, f in flagged[:SHOWN]
                ],
            ))  # fmt: skip
    logging = data.get("logging") or {}
    if logging.get("dropped"):
        out.print(
            f"[yellow]prediction log: {logging['dropped']} rows dropped[/yellow] "
            f"(the log could not keep up; metrics above miss them)"
        )


def _cells(group: GroupStats, drift: dict[str, Any]) -> dict[str, str]:
    """One group's cells, by column heading."""
    metric, quality = _quality(group.performance)
    return {
        "version": str(group.version),
        "role": group.role,
        "version role": f"{group.version} {group.role}",
        "answers": str(group.requests),
        "failed": _pct(group.failure_rate),
        "fallback": _pct(group.fallback_rate),
        "p50 ms": _ms(group.latency_p50_ms),
        "p99 ms": _ms(group.latency_p99_ms),
        "actuals": str(group.actuals or ""),
        "quality (95% CI)": f"{metric} {quality}".strip(),
        "drifted features": _drift(drift.get(str(group.version))),
    }


WIDE = ["version", "role", "answers", "failed", "fallback", "p50 ms", "p99 ms", "actuals",
        "quality (95% CI)", "drifted features"]  # fmt: skip
TRAFFIC = ["version role", "answers", "failed", "fallback", "p50 ms", "p99 ms"]
NAMING = ("version", "role", "version role")
"""Cells that name the group: a stacked table says them in its title instead."""
UNBOUNDED = 10_000
"""Width tables are measured at, to know what they need without wrapping."""
QUALITY = ["version role", "actuals", "quality (95% CI)", "drifted features"]
"""The narrower layout's two tables, each version named with its role in one column."""


def _layouts(title: str, groups: list[GroupStats], drift: dict[str, Any]) -> list[list[Table]]:
    """The ways to show the groups, widest first: one table, two, or one per group."""
    cells = [_cells(group, drift) for group in groups]

    def pick(heading: str, columns: list[str]) -> Table:
        return _table(heading, columns, [[c[column] for column in columns] for c in cells])

    stacked = [
        _table(f"{title}: version {c['version']} ({c['role']})", ["", ""],
               [(k, v) for k, v in c.items() if k not in NAMING], header=False)
        for c in cells
    ]  # fmt: skip
    return [
        [pick(title, WIDE)],
        [pick(f"{title}: traffic", TRAFFIC), pick(f"{title}: quality", QUALITY)],
        stacked or [pick(title, WIDE)],
    ]


def _print_fitting(out: Console, layouts: list[list[Table]]) -> None:
    """Print the first layout whose every table fits `out` without squeezing a column."""
    unbounded = out.options.update_width(UNBOUNDED)
    for tables in layouts[:-1]:
        if all(Measurement.get(out, unbounded, t).maximum <= out.width for t in tables):
            break
    else:
        tables = layouts[-1]
    for table_ in tables:
        out.print(table_)


def _table(
    title: str, columns: list[str], rows: list[Sequence[str]], *, header: bool = True
) -> Table:
    made = Table(title=title, title_justify="left", show_header=header)
    for column in columns:
        made.add_column(column, overflow="fold")
    for row in rows:
        made.add_row(*row)
    return made


def _num(value: Any) -> str:
    return "" if value is None else f"{value:.3g}"
