"""Where the prediction log lives and what its Parquet files hold.

The log is plain Parquet so any engine can read it (DuckDB here; Spark or Trino elsewhere).
Each flush of a writer is one file for every deployment it logged, and each closed hour of a
writer is one compacted file:

    <log root>/predictions/day=<YYYY-MM-DD>/<writer>-<HH>-<seq>.parquet
    <log root>/predictions/day=<YYYY-MM-DD>/<writer>-<HH>.compact.parquet
    <log root>/actuals/day=<YYYY-MM-DD>/<writer>-<HH>-<seq>.parquet
    <log root>/actuals/day=<YYYY-MM-DD>/<writer>-<HH>.compact.parquet

`deployment` is a column. Rows are sorted by deployment, then time (`ts`, `received_at`), in
row groups of bounded size, so the min/max statistics of `deployment` let a reader skip the
row groups of other deployments. Day folders are named Hive-style (`day=...`): Spark, Trino
and DuckDB treat `day` as a partition, and the name can never be a deployment's (names hold
no `=`).

Logs written before this layout keep one folder per deployment,
`<log root>/<kind>/<deployment>/<YYYY-MM-DD>/`, with the same file names and schema.
Readers read both layouts; compaction and expiry handle both, so the old folders empty out
once their days pass the retention period.

Every file has exactly one writer (a gateway worker, or the API process that took actuals),
named in the file name, so no two processes ever write or compact the same file. Dates and
hours are UTC, taken when the file is written. A file is written under a hidden temporary
name and renamed into place, so a reader never sees half a file.
"""

from __future__ import annotations

import re
import secrets
import time
from datetime import date
from pathlib import Path

import pyarrow as pa

PREDICTIONS = "predictions"
ACTUALS = "actuals"
KINDS = (PREDICTIONS, ACTUALS)

OUTCOMES = ("ok", "error", "timeout", "fallback")
"""`ok`: the model answered; `error`/`timeout`: it did not (another step may have);
`fallback`: the deployment's fixed value answered."""

TIMESTAMP = pa.timestamp("us", tz="UTC")

PREDICTION_SCHEMA = pa.schema(
    [
        ("prediction_id", pa.string()),
        ("deployment", pa.string()),
        ("revision", pa.int32()),
        ("model", pa.string()),
        ("version", pa.int32()),
        ("role", pa.string()),  # champion | challenger | shadow | failover | fallback
        ("ts", TIMESTAMP),  # when the answer (or failure) was known
        ("latency_ms", pa.float32()),  # from request start to this answer or failure
        ("outcome", pa.string()),  # one of OUTCOMES
        ("inputs", pa.string()),  # JSON array: the row's values in signature column order
        ("output", pa.string()),  # JSON scalar: the predicted label or number
        ("probabilities", pa.list_(pa.float64())),  # in the version's class order
        ("error", pa.string()),  # why, for error and timeout
    ]
)
"""One row per answered (or failed) row of a request, for every role. `inputs`, `output` and
`probabilities` are null when the deployment does not log payloads for that request."""

ACTUAL_SCHEMA = pa.schema(
    [
        ("prediction_id", pa.string()),
        ("deployment", pa.string()),
        ("actual", pa.string()),  # JSON scalar, typed like the version's outputs
        ("received_at", TIMESTAMP),
        # copied from the logged answer it resolves (one actual row per logged answer)
        ("revision", pa.int32()),
        ("model", pa.string()),
        ("version", pa.int32()),
        ("role", pa.string()),
        ("predicted_at", TIMESTAMP),
        ("outcome", pa.string()),
        ("output", pa.string()),
        ("probabilities", pa.list_(pa.float64())),
    ]
)
"""Actuals are stored already joined to the answers they grade, so accuracy per version and
role reads only this table. Posting the same prediction id again replaces the earlier
actual: readers keep the latest `received_at` per (prediction_id, version, role)."""

SCHEMAS = {PREDICTIONS: PREDICTION_SCHEMA, ACTUALS: ACTUAL_SCHEMA}
SORT_KEYS = {PREDICTIONS: ("deployment", "ts"), ACTUALS: ("deployment", "received_at")}
"""How the rows of every file are ordered: one deployment's rows sit together."""
DAY_PREFIX = "day="

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def writer_name(worker_id: str) -> str:
    """A worker id made safe for a file name (no separators, no dashes: the name is split
    on them)."""
    return _UNSAFE.sub("_", worker_id).replace("-", "_") or "writer"


def new_prediction_id() -> str:
    """32 hex characters, time-ordered: 12 of milliseconds since the epoch, 20 random.

    Ids made in the same millisecond or later sort after earlier ones, which keeps Parquet
    min/max statistics useful when actuals look ids up.
    """
    return f"{time.time_ns() // 1_000_000:012x}{secrets.token_hex(10)}"


def kind_dir(root: Path, kind: str) -> Path:
    if kind not in KINDS:
        raise ValueError(f"unknown log kind {kind!r}")
    return root / kind


def day_dir(root: Path, kind: str, day: date) -> Path:
    """The folder of one UTC day of one kind, holding every deployment's rows."""
    return kind_dir(root, kind) / f"{DAY_PREFIX}{day:%Y-%m-%d}"


def legacy_dir(root: Path, kind: str, deployment: str) -> Path:
    """The folder of one deployment in the earlier layout (day folders named `YYYY-MM-DD`)."""
    return kind_dir(root, kind) / deployment


def day_of(folder: str) -> date | None:
    """The day a `day=YYYY-MM-DD` folder holds; None for any other name."""
    if not folder.startswith(DAY_PREFIX):
        return None
    return legacy_day_of(folder[len(DAY_PREFIX) :])


def legacy_day_of(folder: str) -> date | None:
    """The day a `YYYY-MM-DD` folder of the earlier layout holds; None for any other name."""
    if not _DAY.fullmatch(folder):
        return None
    try:
        return date.fromisoformat(folder)
    except ValueError:
        return None
