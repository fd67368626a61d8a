"""A deployment whose inputs drift: the retrain policy notices, a job retrains the model
with its registered pipeline and params on the logged traffic and its actuals, and the new
version is rolled out through the usual gates."""

from __future__ import annotations

import time
from typing import Any

import joblib
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from turnout.cli.monitoring import render_status
from turnout.cli.output import console, table
from turnout.client import Client
from turnout.examples.context import MODEL, MODELS, Tour, train
from turnout.examples.rollouts import TOUR_PLAN
from turnout.examples.traffic import follow_rollout

DRIFT_DEPLOYMENT = "breast-cancer-scanner"
RECALIBRATED = ("mean area", "worst area", "area error", "mean perimeter", "worst perimeter")
"""Columns a recalibrated scanner reports in new units (x1.8): the world the model knew moved."""
RECALIBRATION = 1.8
BATCH = 10
RETRAIN_TIMEOUT_S = 180

RETRAIN_POLICY = {
    "data": {"log": "1h"},  # the deployment's own traffic, joined with its actuals
    "triggers": {"drifted_features": 3, "window": "1h", "min_rows": 100},
    "cooldown": "1h",
    "check_every": "1s",
    "min_rows": 100,
}


def run(tour: Tour) -> None:
    client, data = tour.client, tour.data
    console.print(
        "\n[bold]retraining[/bold]: a version registered with its training pipeline is "
        "retrained by policy when its traffic drifts"
    )
    path = tour.workdir / "model-pipeline.joblib"
    joblib.dump(train(data.x_train, data.y_train, 1.0), path)
    record = client.register(
        MODEL, path, flavor="sklearn", params={"C": "1.0"}, training_data=tour.training_csv,
        target="target", pipeline=str(MODELS / "pipeline.py"),
        description="StandardScaler + LogisticRegression(C=1.0), with its training pipeline",
    )  # fmt: skip
    client.apply({
        "deployment": DRIFT_DEPLOYMENT, "model": MODEL, "version": record["version"],
        "rollout": TOUR_PLAN, "retrain": RETRAIN_POLICY,
    })  # fmt: skip
    console.print(
        f"deployed {record['ref']} as [bold]{DRIFT_DEPLOYMENT}[/bold] with a retrain policy: "
        "retrain on the last hour of traffic when 3 or more features drift"
    )
    shifted = data.features.copy()
    for column in RECALIBRATED:
        shifted[column] = shifted[column] * RECALIBRATION
    ids: list[str] = []
    progress = Progress(TextColumn("[bold]traffic from the recalibrated scanner"), BarColumn(),
                        MofNCompleteColumn(), transient=True)  # fmt: skip
    with progress:
        task = progress.add_task("traffic", total=len(shifted))
        for start in range(0, len(shifted), BATCH):
            part = shifted.iloc[start : start + BATCH]
            ids += client.predict(DRIFT_DEPLOYMENT, part.to_numpy().tolist())["prediction_ids"]
            progress.advance(task, len(part))
    client.post_actuals(
        DRIFT_DEPLOYMENT,
        [{"prediction_id": i, "actual": int(y)} for i, y in zip(ids, data.target, strict=True)],
    )
    render_status(client.metrics(DRIFT_DEPLOYMENT, window="1h"))
    job = _wait_for_retrain(client)
    if job is None or job["state"] != "succeeded":
        reason = "no retrain started" if job is None else job["message"]
        console.print(f"[red]the retrain did not succeed:[/red] {reason}", highlight=False)
        return
    result = job["result"]
    version = int(result["version"])
    console.print(
        f"job {job['id']} ({job['trigger']} trigger) registered [bold]{MODEL}:"
        f"{version}[/bold] from {result['rows']['train']} logged rows "
        f"(data fingerprint {result['data_fingerprint'][:12]}); on the newest "
        f"{result['rows']['holdout']} rows it scores accuracy "
        f"{result['metrics'].get('accuracy', float('nan')):.3f}, its parent "
        f"{result['parent_metrics'].get('accuracy', float('nan')):.3f}",
        highlight=False,
    )
    status = follow_rollout(
        client, DRIFT_DEPLOYMENT, label=f"{MODEL}:{version}", rows=shifted.to_numpy().tolist()
    )
    console.print(
        f"rollout of {MODEL}:{version}: {status['state']}"
        + (f" ({status['reason']})" if status["reason"] else ""),
        highlight=False,
    )
    _lineage(client, version)


def _lineage(client: Client, version: int) -> None:
    table(
        f"lineage of {MODEL}:{version}",
        ["version", "parent", "job", "trigger", "data fingerprint"],
        [
            (v["ref"], v["parent_version"], v["lineage"].get("job"), v["lineage"].get("trigger"),
             str(v["lineage"].get("data_fingerprint") or (v["training"] or {}).get("fingerprint")
                 or "")[:12])
            for v in client.lineage(MODEL, version)
        ],
    )  # fmt: skip


def _wait_for_retrain(client: Client) -> dict[str, Any] | None:
    """The retrain job the drift trigger starts, followed until it ends."""
    progress = Progress(
        TextColumn("[bold]retrain"), BarColumn(), TextColumn("{task.description}"),
        TimeElapsedColumn(), transient=True,
    )  # fmt: skip
    with progress:
        task = progress.add_task("waiting for the drift trigger", total=1.0)
        deadline = time.monotonic() + RETRAIN_TIMEOUT_S
        while time.monotonic() < deadline:
            jobs = client.jobs(deployment=DRIFT_DEPLOYMENT, limit=1)
            if jobs:
                job = jobs[0]
                progress.update(task, completed=job["progress"], description=job["message"])
                if job["state"] in ("failed", "cancelled"):
                    return dict(job)
                if job["state"] == "succeeded" and job["result"].get("handoff"):
                    return dict(job)  # the controller has started the rollout
            time.sleep(0.5)
    return None
