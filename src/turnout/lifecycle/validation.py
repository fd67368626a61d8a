"""The validation step: the candidate scored offline on labelled rows, beside the champion.

The rows are the deployment's recent traffic that has actuals: the inputs the champion
answered (as logged), the actual, and the champion's logged answer. The candidate predicts
the same inputs where models run (its own runner process), so the comparison is on identical
rows, and `gates.validation_verdict` judges the report.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd

from turnout.errors import BadRequest
from turnout.lifecycle.gates import Verdict, validation_verdict
from turnout.lifecycle.plans import ValidatePlan
from turnout.lifecycle.reports import ProbeFailure, Robustness, ValidationReport
from turnout.lifecycle.sources import DataAccess
from turnout.monitoring.metrics import classification_metrics, regression_metrics
from turnout.monitoring.query import LogReader
from turnout.registry.flavors import Prediction
from turnout.registry.signature import Signature
from turnout.types import JSON, Array

Predict = Callable[[str, int, Array], Prediction]
"""(model, version, rows) -> the version's prediction, computed where models run."""
MAX_ROWS = 5_000
"""Most recent labelled rows a validation scores."""


def labelled_rows(
    reader: LogReader, deployment: str, champion: int, *, limit: int = MAX_ROWS
) -> tuple[list[Any], list[Any], list[Any], list[Any]]:
    """(input rows, actuals, champion labels, champion probabilities), newest first."""
    graded = reader.graded(deployment).to_pylist()
    mine = [
        g
        for g in graded
        if g["version"] == champion
        and g["role"] == "champion"
        and g["output"] is not None
        and g["actual"] is not None
    ]
    mine.sort(key=lambda g: g["received_at"], reverse=True)
    mine = mine[:limit]
    inputs = reader.inputs_of(
        deployment, [g["prediction_id"] for g in mine], version=champion, role="champion"
    )
    kept = [g for g in mine if g["prediction_id"] in inputs]
    rows = [orjson.loads(inputs[g["prediction_id"]]) for g in kept]
    actual = [orjson.loads(g["actual"]) for g in kept]
    labels = [orjson.loads(g["output"]) for g in kept]
    probabilities = [g["probabilities"] for g in kept]
    return rows, actual, labels, probabilities


def validate(
    plan: ValidatePlan,
    *,
    reader: LogReader,
    deployment: str,
    model: str,
    champion: int,
    candidate: int,
    champion_signature: Signature,
    candidate_signature: Signature,
    predict: Predict,
    access: DataAccess | None = None,
) -> Verdict:
    """Score the candidate (and, on a holdout file, the champion) on the same labelled rows,
    probe both with broken rows, and judge the report. A holdout file is read only where
    `access` allows (default: anywhere, for trusted in-process use)."""
    if candidate_signature.names != champion_signature.names:
        return Verdict(
            "fail",
            "the candidate's input columns differ from the champion's, so callers' requests "
            "would not fit it",
            {
                "candidate": list(candidate_signature.names),
                "champion": list(champion_signature.names),
            },
        )
    if plan.holdout is not None:
        try:
            rows, actual = holdout_rows(plan, champion_signature, access)
        except BadRequest as error:
            return Verdict("fail", error.message, {"holdout": plan.holdout})
        matrix = _matrix(rows)
        theirs = predict(model, champion, matrix) if rows else None
        labels = [] if theirs is None else np.asarray(theirs.values).tolist()
        probabilities: list[Any] = (
            [None] * len(rows)
            if theirs is None or theirs.probabilities is None
            else list(np.asarray(theirs.probabilities))
        )
    else:
        rows, actual, labels, probabilities = labelled_rows(reader, deployment, champion)
    report = ValidationReport(source=plan.holdout or "logged traffic with actuals", n=len(rows))
    if len(rows) >= plan.min_rows:
        report = _score(report, model, candidate, candidate_signature, champion_signature,
                        rows, actual, labels, probabilities, predict)  # fmt: skip
        if plan.robustness:
            robustness = probe(
                predict,
                model,
                (champion, champion_signature),
                (candidate, candidate_signature),
                _matrix(rows),
            )
            report = replace(report, robustness=robustness)
    verdict = validation_verdict(plan, report)
    if plan.holdout is not None and verdict.outcome == "inconclusive":
        # a file does not grow: waiting would not bring the missing rows
        return Verdict("fail", verdict.reason, verdict.evidence)
    return verdict


def _score(
    report: ValidationReport,
    model: str,
    candidate: int,
    candidate_signature: Signature,
    champion_signature: Signature,
    rows: list[Any],
    actual: list[Any],
    labels: list[Any],
    probabilities: list[Any],
    predict: Predict,
) -> ValidationReport:
    """The report with both versions' metrics on the rows, and how the candidate compares."""
    matrix = _matrix(rows)
    started = time.perf_counter()
    answer = predict(model, candidate, matrix)
    latency_ms = (time.perf_counter() - started) * 1000 / len(rows)
    predicted = np.asarray(answer.values).tolist()
    classes = candidate_signature.classes
    champion_probs = None
    if all(p is not None for p in probabilities):
        champion_probs = np.asarray(probabilities, dtype=np.float64)
    if classes is not None:
        ours_metrics = _flat(classification_metrics(
            actual, predicted, answer.probabilities, list(classes)
        ))  # fmt: skip
        theirs_metrics = _flat(classification_metrics(
            actual, labels, champion_probs, list(champion_signature.classes or classes)
        ))  # fmt: skip
        ours = None if answer.probabilities is None else np.asarray(answer.probabilities)
        correlation = _correlation(ours, champion_probs)
    else:
        ours_metrics = _flat(regression_metrics(actual, predicted))
        theirs_metrics = _flat(regression_metrics(actual, labels))
        correlation = _correlation(
            np.asarray(predicted, dtype=np.float64), np.asarray(labels, dtype=np.float64)
        )
    agreement = float(np.mean([a == b for a, b in zip(predicted, labels, strict=True)]))
    return replace(
        report,
        candidate=ours_metrics,
        champion=theirs_metrics,
        scored=True,
        agreement=agreement,
        correlation=correlation,
        latency_ms=latency_ms,
    )


def _correlation(ours: Array | None, theirs: Array | None) -> float | None:
    """Pearson correlation of the two versions' scores (numbers, or class probabilities
    with every class's column stacked); None when either is missing or constant."""
    if ours is None or theirs is None or ours.shape != theirs.shape:
        return None
    a, b = ours.ravel(), theirs.ravel()
    if a.size < 2 or not (np.isfinite(a).all() and np.isfinite(b).all()):
        return None
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 1.0 if np.array_equal(a, b) else None
    return float(np.corrcoef(a, b)[0, 1])


def holdout_rows(
    plan: ValidatePlan, signature: Signature, access: DataAccess | None = None
) -> tuple[list[Any], list[Any]]:
    """(input rows in the signature's column order, labels) from the plan's holdout file."""
    assert plan.holdout is not None
    if access is not None:
        access.check_path(plan.holdout, what="the holdout file")
    path = Path(plan.holdout).expanduser()
    if not path.is_file():
        raise BadRequest(f"holdout file {plan.holdout} does not exist on the server")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path)
    except Exception as error:  # any reader failure is the file's problem, said plainly
        raise BadRequest(f"cannot read holdout file {plan.holdout}: {error}") from None
    if plan.label_column not in frame.columns:
        raise BadRequest(
            f"holdout file {plan.holdout} has no label column {plan.label_column!r} "
            f"(columns: {', '.join(map(str, frame.columns[:20]))}); set `label_column`"
        )
    names = list(signature.names)
    missing = [name for name in names if name not in frame.columns]
    if missing:
        raise BadRequest(
            f"holdout file {plan.holdout} lacks the model's input columns: "
            + ", ".join(missing[:10])
        )
    frame = frame.tail(MAX_ROWS)
    rows = frame[names].astype(object).where(frame[names].notna(), None).to_numpy().tolist()
    return rows, frame[plan.label_column].tolist()


PROBE_KINDS = ("missing", "high", "low")
"""Broken rows a validation tries: one column missing (NaN), or far above or below every
value it took in the validation rows."""


def probe(
    predict: Predict,
    model: str,
    champion: tuple[int, Signature],
    candidate: tuple[int, Signature],
    matrix: Array,
) -> Robustness:
    """Send both versions the same broken rows and list where the candidate fails a row the
    champion answers. A row the champion refuses too is not held against the candidate.
    A missing value reaches a version only if its signature accepts missing values, as in
    the gateway, which refuses such a request (400) otherwise."""
    names = champion[1].names
    base = matrix[:1].copy()
    numeric = matrix.dtype != object
    probes: list[tuple[str, Array]] = []
    for column in range(matrix.shape[1]):
        for kind in PROBE_KINDS:
            if kind != "missing" and not numeric:
                continue
            row = base.copy() if numeric else base.astype(object)
            if kind == "missing":
                row[0, column] = np.nan if numeric else None
            else:
                values = matrix[:, column].astype(np.float64)
                span = float(np.nanmax(values) - np.nanmin(values)) or 1.0
                edge = np.nanmax(values) if kind == "high" else np.nanmin(values)
                row[0, column] = edge + (10 if kind == "high" else -10) * span
            label = names[column] if names and column < len(names) else f"column {column}"
            probes.append((f"{kind} {label}", row))
    failed: list[ProbeFailure] = []
    for name, row in probes:
        theirs, ours = (
            _attempt(predict, model, *champion, row, missing=name.startswith("missing")),
            _attempt(predict, model, *candidate, row, missing=name.startswith("missing")),
        )
        if theirs is None and ours is not None:
            failed.append(ProbeFailure(probe=name, candidate=ours))
    return Robustness(probes=len(probes), failures=len(failed), failed=tuple(failed[:20]))


def _attempt(
    predict: Predict, model: str, version: int, signature: Signature, row: Array, *, missing: bool
) -> str | None:
    """None when the version answered with a usable value; else what went wrong."""
    if missing and not signature.allow_missing:
        return "requests with a missing value are refused (400): its signature does not accept them"
    try:
        answer = predict(model, version, row)
    except Exception as error:  # a broken row may raise anything inside a model
        return f"{type(error).__name__}: {error}"[:200]
    values = np.asarray(answer.values)
    if values.shape[:1] != (1,):
        return f"returned {values.shape[0] if values.ndim else 0} values for 1 row"
    if values.dtype.kind in "fc" and not np.isfinite(values).all():
        return "returned a non-finite value"
    if answer.probabilities is not None and not np.isfinite(answer.probabilities).all():
        return "returned non-finite class probabilities"
    return None


def _matrix(rows: list[Any]) -> Array:
    try:
        return np.asarray(rows, dtype=np.float64)
    except (TypeError, ValueError):
        return np.asarray(rows, dtype=object)


def _flat(metrics: dict[str, JSON]) -> dict[str, JSON]:
    """Only the metric entries (their value dicts), as the verdict reads them."""
    return {k: v for k, v in metrics.items() if k not in ("task", "n") and v is not None}
