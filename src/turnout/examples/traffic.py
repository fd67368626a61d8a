"""The tour's callers: requests sent row by row with a progress bar, graded per version and
role, and traffic kept flowing while a rollout moves through its gates."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sklearn.metrics import accuracy_score

from turnout.client import ApiError, Client

TRAFFIC_COLUMNS = ["version", "role", "requests", "accuracy", "p50 ms", "p99 ms"]
ROLLOUT_TIMEOUT_S = 240
ROLLOUT_BATCH = 20
"""Requests sent between two looks at the rollout's status."""


@dataclass(frozen=True)
class Actual:
    """The true label of one prediction, posted as an actual."""

    prediction_id: str
    actual: int


@dataclass
class Answered:
    """What one (version, role) answered: predicted and true labels, latencies."""

    predicted: list[object] = field(default_factory=list)
    actual: list[object] = field(default_factory=list)
    latency_ms: list[float] = field(default_factory=list)

    def row(self, version: int, role: str) -> tuple[object, ...]:
        p50, p99 = np.percentile(self.latency_ms, [50, 99])
        accuracy = accuracy_score(self.actual, self.predicted)
        return (version, role, len(self.predicted), f"{accuracy:.3f}", f"{p50:.2f}", f"{p99:.2f}")


def send_traffic(
    client: Client,
    deployment: str,
    rows: pd.DataFrame,
    truth: pd.Series,
    *,
    label: str,
    graded: list[Actual] | None = None,
) -> list[tuple[object, ...]]:
    """One request per row, alternating the native API and OIP, with a progress bar.

    Each answer's true label is appended to `graded` (when given), to be posted as actuals.
    Returns one table row per (version, role) that answered: requests, accuracy, latency."""
    answers: dict[tuple[int, str], Answered] = {}
    progress = Progress(
        TextColumn(f"[bold]{label}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        transient=True,
    )
    with progress:
        task = progress.add_task(label, total=len(rows))
        for i, (row, actual) in enumerate(zip(rows.itertuples(index=False), truth, strict=True)):
            started = time.perf_counter()
            if i % 2:
                prediction_id, predicted, version, role = _native(client, deployment, rows, row)
            else:
                prediction_id, predicted, version, role = _oip(client, deployment, row)
            if graded is not None:
                graded.append(Actual(prediction_id, int(actual)))
            answered = answers.setdefault((version, role), Answered())
            answered.predicted.append(predicted)
            answered.actual.append(actual)
            answered.latency_ms.append((time.perf_counter() - started) * 1000)
            progress.advance(task)
    return [answered.row(*key) for key, answered in sorted(answers.items())]


def _native(
    client: Client, deployment: str, rows: pd.DataFrame, row: tuple[Any, ...]
) -> tuple[str, object, int, str]:
    """One row as a record through `/v1/deployments/NAME/predict`."""
    answer = client.predict(deployment, [dict(zip(rows.columns, row, strict=True))])
    return (
        answer["prediction_ids"][0],
        answer["predictions"][0],
        int(answer["model_version"]),
        answer["role"],
    )


def _oip(client: Client, deployment: str, row: tuple[Any, ...]) -> tuple[str, object, int, str]:
    """One row as an FP64 tensor through `/v2/models/NAME/infer`."""
    tensor = {"name": "input-0", "shape": [1, len(row)], "datatype": "FP64", "data": list(row)}
    answer = client.infer(deployment, {"inputs": [tensor]})
    return (
        answer["id"],
        answer["outputs"][0]["data"][0],
        int(answer["model_version"]),
        answer["parameters"]["role"],
    )


def follow_rollout(
    client: Client,
    deployment: str,
    *,
    label: str,
    rows: list[list[float]],
    breaks_in_bake: Path | None = None,
) -> dict[str, Any]:
    """Send traffic until the deployment's rollout ends, showing its step as it moves.

    `breaks_in_bake` is a flag file created once the rollout reaches its bake step (the
    version's feature store goes down after its promotion) and removed at the end."""
    progress = Progress(
        TextColumn("[bold]rollout of {task.fields[version]}"),
        TextColumn("{task.fields[step]}"),
        TimeElapsedColumn(),
        transient=True,
    )
    status: dict[str, Any] = {}
    with progress:
        task = progress.add_task("rollout", version=label, step="warmup")
        deadline = time.monotonic() + ROLLOUT_TIMEOUT_S
        i = 0
        while time.monotonic() < deadline:
            for _ in range(ROLLOUT_BATCH):
                with contextlib.suppress(ApiError):
                    client.predict(deployment, [rows[i % len(rows)]])
                i += 1
            status = client.rollout_status(deployment)
            progress.update(task, step=status["step"])
            if breaks_in_bake is not None and status["step"] == "bake":
                breaks_in_bake.touch()
            if status["state"] not in ("running", "waiting_approval"):
                break
    if breaks_in_bake is not None:
        breaks_in_bake.unlink(missing_ok=True)
    return status
