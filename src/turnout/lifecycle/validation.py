"""The validation step: the candidate scored offline on labelled rows, beside the champion.

The rows are the deployment's recent traffic that has actuals: the inputs the champion
answered (as logged), the actual, and the champion's logged answer. The candidate predicts
the same inputs where models run (its own runner process), so the comparison is on identical
rows, and `gates.validation_verdict` judges the report.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson

from turnout.lifecycle.gates import Verdict, validation_verdict
from turnout.lifecycle.plans import ValidatePlan
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
) -> Verdict:
    if plan.holdout is not None:
        return Verdict(
            "fail",
            "scoring on a registered holdout dataset is not available yet; leave `holdout` "
            "empty to validate on the deployment's recent traffic with actuals",
            {"holdout": plan.holdout},
        )
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
    rows, actual, labels, probabilities = labelled_rows(reader, deployment, champion)
    report: dict[str, JSON] = {"n": len(rows), "candidate": {}, "champion": None}
    if len(rows) >= plan.min_rows:
        matrix = _matrix(rows)
        started = time.perf_counter()
        answer = predict(model, candidate, matrix)
        latency_ms = (time.perf_counter() - started) * 1000 / len(rows)
        predicted = np.asarray(answer.values).tolist()
        classes = candidate_signature.classes
        if classes is not None:
            report["candidate"] = _flat(classification_metrics(
                actual, predicted, answer.probabilities, list(classes)
            ))  # fmt: skip
            champion_probs = None
            if all(p is not None for p in probabilities):
                champion_probs = np.asarray(probabilities, dtype=np.float64)
            report["champion"] = _flat(classification_metrics(
                actual, labels, champion_probs, list(champion_signature.classes or classes)
            ))  # fmt: skip
        else:
            report["candidate"] = _flat(regression_metrics(actual, predicted))
            report["champion"] = _flat(regression_metrics(actual, labels))
        report["agreement"] = float(
            np.mean([a == b for a, b in zip(predicted, labels, strict=True)])
        )
        report["latency_ms"] = latency_ms
    return validation_verdict(plan, report)


def _matrix(rows: list[Any]) -> Array:
    try:
        return np.asarray(rows, dtype=np.float64)
    except (TypeError, ValueError):
        return np.asarray(rows, dtype=object)


def _flat(metrics: dict[str, JSON]) -> dict[str, JSON]:
    """Only the metric entries (their value dicts), as the verdict reads them."""
    return {k: v for k, v in metrics.items() if k not in ("task", "n") and v is not None}
