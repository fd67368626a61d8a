"""`turnout actuals` and `turnout status`: ground truth in, production health out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from turnout.cli.output import JsonOption, console, print_json, table
from turnout.client import Client

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


def render_status(data: dict[str, Any]) -> None:
    """The status tables of one deployment's metrics (the API's /metrics answer)."""
    name = data["deployment"]
    drift = data["drift"]
    rows = []
    for g in data["groups"]:
        metric, quality = _quality(g.get("performance"))
        failed = None
        if g["error_rate"] is not None:
            failed = g["error_rate"] + (g["timeout_rate"] or 0.0)
        rows.append(
            (
                g["version"],
                g["role"],
                g["requests"],
                _pct(failed),
                _pct(g["fallback_rate"]),
                _ms(g["latency_p50_ms"]),
                _ms(g["latency_p99_ms"]),
                g.get("actuals") or "",
                f"{metric} {quality}".strip(),
                _drift(drift.get(str(g["version"]))),
            )
        )
    table(
        f"{name} ({data['model']}), last {data['window']}",
        ["version", "role", "answers", "failed", "fallback", "p50 ms", "p99 ms", "actuals",
         "quality (95% CI)", "drifted features"],
        rows,
    )  # fmt: skip
    console.print(
        "failed: errors and timeouts (a failover or fallback may still have answered); "
        "drifted features: features whose live inputs moved from the training data (PSI and "
        "KS/chi-square), of those with enough rows",
        style="dim",
    )
    if not rows:
        console.print(f"no predictions logged for {name} in the last {data['window']}")
    for version, info in sorted(drift.items(), key=lambda kv: int(kv[0])):
        features = info.get("features") or {}
        flagged = sorted(
            ((k, f) for k, f in features.items() if f.get("level") in ("major", "moderate")),
            key=lambda kf: -(kf[1].get("psi") or 0.0),
        )
        if flagged:
            table(
                f"drift of version {version} against its training data",
                ["feature", "PSI", "test", "statistic", "p-value", "level"],
                [
                    (k, f"{f['psi']:.3f}", f["test"], _num(f.get("statistic")),
                     _num(f.get("p_value")), f["level"])
                    for k, f in flagged[:SHOWN]
                ],
            )  # fmt: skip
    logging = data.get("logging") or {}
    if logging.get("dropped"):
        console.print(
            f"[yellow]prediction log: {logging['dropped']} rows dropped[/yellow] "
            f"(the log could not keep up; metrics above miss them)"
        )


def _num(value: Any) -> str:
    return "" if value is None else f"{value:.3g}"
