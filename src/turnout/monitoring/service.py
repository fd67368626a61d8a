"""Production metrics of a deployment: traffic, latency, accuracy against actuals, drift.

Everything here is read from the prediction log (Parquet, via DuckDB) and the versions'
registration baselines; the gateway only ever appends to the log.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from turnout.duration import parse_duration
from turnout.errors import BadRequest
from turnout.monitoring.actuals import ActualsReport, ingest
from turnout.monitoring.drift import data_drift, prediction_drift
from turnout.monitoring.groups import GroupStats
from turnout.monitoring.metrics import classification_metrics, regression_metrics
from turnout.monitoring.query import LogReader
from turnout.monitoring.remote import Pusher, RemoteLog
from turnout.registry.service import Registry
from turnout.registry.signature import Signature
from turnout.store import metadata as md
from turnout.store.db import Database
from turnout.types import JSON

DEFAULT_WINDOW = "24h"
MAX_ACTUALS_PER_REQUEST = 100_000
DRIFT_ROWS = 50_000
"""Most recent logged inputs per version that drift statistics are computed on."""

MAX_WINDOW_S = 1000 * 365 * 86400.0
"""Longer windows read as this long (everything logged, and no date before year 1)."""


@dataclass(frozen=True, slots=True)
class Window:
    """[since, until) in UTC; `since` None means since the first logged prediction."""

    text: str
    since: datetime | None
    until: datetime

    @classmethod
    def parse(cls, text: str | None, *, now: datetime | None = None) -> Window:
        text = (text or DEFAULT_WINDOW).strip().lower()
        until = now or datetime.now(UTC)
        if text == "all":
            return cls(text, None, until)
        try:
            seconds = parse_duration(text)
        except ValueError as error:
            raise BadRequest(f"invalid window {text!r}: {error} (or 'all')") from None
        return cls(text, until - timedelta(seconds=min(seconds, MAX_WINDOW_S)), until)

    def to_dict(self) -> dict[str, JSON]:
        return {
            "window": self.text,
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat(),
        }


class Monitor:
    """Reads and grades what a deployment's answers were; takes actuals for them."""

    def __init__(
        self,
        db: Database,
        registry: Registry,
        root: Path,
        *,
        writer: str,
        settle_s: float = 0.0,
        logging: Callable[[], list[dict[str, Any]]] = list,
        remote: RemoteLog | None = None,
        retention_days: int | None = None,
    ) -> None:
        """`settle_s`: how long to wait for predictions still buffered in a worker before an
        actual's id is reported unknown. `logging`: the live workers' logger counters.
        `remote`: the object store the log is shared on (actuals taken here are pushed
        there)."""
        self.db = db
        self.registry = registry
        self.root = root
        self.reader = LogReader(root, remote=remote, retention_days=retention_days)
        self._remote = remote
        self._pusher: Pusher | None = None
        """Started with the first actuals taken."""
        self.writer = writer
        self.settle_s = settle_s
        self._logging = logging

    def _model_of(self, deployment: str) -> str:
        with self.db.read() as conn:
            return md.get_deployment(conn, deployment).model

    def _signature(self, model: str, version: int) -> Signature:
        return Signature.from_dict(self.registry.get_version(model, version).signature)

    # -- actuals ----------------------------------------------------------------------------

    def post_actuals(self, deployment: str, rows: Sequence[object]) -> ActualsReport:
        self._model_of(deployment)  # 404 for an unknown deployment
        if len(rows) > MAX_ACTUALS_PER_REQUEST:
            raise BadRequest(
                f"{len(rows)} actuals in one request; send at most {MAX_ACTUALS_PER_REQUEST} "
                "per request"
            )
        report = ingest(
            self.reader,
            self.root,
            self.writer,
            deployment,
            rows,
            signature_of=self._signature,
            settle_s=self.settle_s,
        )
        if self._remote is not None:
            if self._pusher is None:
                self._pusher = Pusher(self._remote)
            self._pusher.poke()
        return report

    def close(self) -> None:
        """Push the actuals taken here to the shared log one last time (when it is one)."""
        if self._pusher is not None:
            self._pusher.close()

    # -- metrics ----------------------------------------------------------------------------

    def groups(
        self,
        deployment: str,
        *,
        since: datetime | None,
        until: datetime | None = None,
        performance: bool = True,
    ) -> list[GroupStats]:
        """Traffic, latency and graded performance per (version, role): what gates read.
        `performance=False` leaves out the full metric report (with its bootstrap
        intervals); accuracy and the actuals count are there either way."""
        model = self._model_of(deployment)
        groups = self.reader.summary(deployment, since=since, until=until)
        if not performance:
            return groups
        by_group = _graded_by_group(self.reader.graded(deployment, since=since, until=until))
        signatures: dict[int, Signature] = {}
        graded = []
        for group in groups:
            if group.version not in signatures:
                signatures[group.version] = self._signature(model, group.version)
            pairs = by_group.get((group.version, group.role))
            report = _performance(signatures[group.version], pairs) if pairs else None
            graded.append(replace(group, performance=report))
        return graded

    def drift(
        self, deployment: str, version: int, *, since: datetime | None, until: datetime
    ) -> dict[str, JSON]:
        """One version's input and prediction drift against its training data, as in
        `metrics`, without grading every group."""
        record = self.registry.get_version(self._model_of(deployment), version)
        inputs, outputs = self.reader.payloads(
            deployment, version, since=since, until=until, limit=DRIFT_ROWS
        )
        return _drift(record.training, record.signature, inputs, outputs)

    def metrics(self, deployment: str, window: Window) -> dict[str, JSON]:
        model = self._model_of(deployment)
        since, until = window.since, window.until
        groups = self.groups(deployment, since=since, until=until)
        versions = sorted({g.version for g in groups})
        records = {v: self.registry.get_version(model, v) for v in versions}
        drift: dict[str, JSON] = {}
        for version in versions:
            inputs, outputs = self.reader.payloads(
                deployment, version, since=since, until=until, limit=DRIFT_ROWS
            )
            drift[str(version)] = _drift(records[version].training, records[version].signature,
                                         inputs, outputs)  # fmt: skip
        return {
            "deployment": deployment,
            "model": model,
            **window.to_dict(),
            "groups": [group.to_dict() for group in groups],
            "drift": drift,
            "logging": _logging_totals(self._logging()),
        }


def _graded_by_group(graded: Any) -> dict[tuple[int, str], list[tuple[str, str, Any]]]:
    """(version, role) -> [(actual JSON, output JSON, probabilities)] for answered rows."""
    columns = graded.select(["version", "role", "actual", "output", "probabilities"]).to_pydict()
    out: dict[tuple[int, str], list[tuple[str, str, Any]]] = {}
    for version, role, actual, output, probs in zip(
        columns["version"],
        columns["role"],
        columns["actual"],
        columns["output"],
        columns["probabilities"],
        strict=True,
    ):
        if actual is None or output is None:
            continue
        out.setdefault((version, role), []).append((actual, output, probs))
    return out


def _performance(signature: Signature, pairs: list[tuple[str, str, Any]]) -> dict[str, JSON]:
    actual = [orjson.loads(a) for a, _, _ in pairs]
    predicted = [orjson.loads(o) for _, o, _ in pairs]
    if signature.classes is not None:
        classes = list(signature.classes)
        probs = [p for _, _, p in pairs]
        matrix = None
        if all(p is not None and len(p) == len(classes) for p in probs):
            matrix = np.asarray(probs, dtype=np.float64)
        return classification_metrics(actual, predicted, matrix, classes)
    try:
        return regression_metrics(
            np.asarray(actual, dtype=np.float64), np.asarray(predicted, dtype=np.float64)
        )
    except (TypeError, ValueError):  # non-numeric outputs without classes: nothing to grade
        return {"task": "unknown", "n": len(pairs)}


def _drift(
    training: dict[str, JSON] | None,
    signature: dict[str, JSON],
    inputs: list[str],
    outputs: list[str],
) -> dict[str, JSON]:
    if not training:
        return {"rows": len(inputs), "baseline": False, "features": {}, "prediction": None}
    columns = list(Signature.from_dict(signature).names)
    rows = [orjson.loads(r) for r in inputs]
    predictions = [orjson.loads(o) for o in outputs]
    features = data_drift(training, columns, rows)
    return {
        "rows": len(rows),
        "baseline": True,
        "features": features,
        "drifted": sorted(name for name, f in features.items() if f.get("drifted")),
        "prediction": prediction_drift(training, predictions),
    }


def _logging_totals(workers: list[dict[str, Any]]) -> dict[str, JSON]:
    totals: dict[str, JSON] = {"workers": len(workers), "buffered": 0, "written": 0, "dropped": 0}
    errors = []
    for stats in workers:
        for key in ("buffered", "written", "dropped"):
            totals[key] += int(stats.get(key) or 0)
        if stats.get("last_error"):
            errors.append(str(stats["last_error"]))
    totals["last_errors"] = errors
    return totals
