"""Ground truth for logged predictions: checking posted actuals, typing them like the answers
they grade, and storing them already joined to those answers (see `layout.ACTUAL_SCHEMA`)."""

from __future__ import annotations

import io
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from turnout.errors import BadRequest
from turnout.monitoring import segments
from turnout.monitoring.layout import ACTUAL_SCHEMA, ACTUALS
from turnout.monitoring.query import LogReader
from turnout.registry.signature import DType, Signature
from turnout.types import JSON

PREDICTION_ID = re.compile(r"[\x20-\x7e]{1,128}")
"""1 to 128 printable ASCII characters, like the ids the gateway accepts."""

COLUMNS = ("prediction_id", "actual")
_PARQUET_MAGIC = b"PAR1"
_NO_MATCH = object()


class Invalid(Exception):
    """One posted row cannot be used; the message says why."""


@dataclass
class ActualsReport:
    """What happened to each row of one posted batch of actuals."""

    accepted: int = 0
    """Rows of the request stored (each as one actual per logged answer to its id)."""
    replaced: int = 0
    """Of the accepted rows, those whose id already had an actual (the new one wins)."""
    unknown: list[str] = field(default_factory=list)
    """Prediction ids not found in the log: nothing stored for them."""
    rejected: list[dict[str, JSON]] = field(default_factory=list)
    """`{"index", "prediction_id", "error"}` for each invalid row."""

    def to_dict(self) -> dict[str, JSON]:
        return {
            "accepted": self.accepted,
            "replaced": self.replaced,
            "unknown": list(self.unknown),
            "rejected": [dict(r) for r in self.rejected],
        }

    def reject(self, index: int, prediction_id: JSON, error: str) -> None:
        self.rejected.append({"index": index, "prediction_id": prediction_id, "error": error})


@dataclass(frozen=True, slots=True)
class Posted:
    index: int
    prediction_id: str
    actual: JSON


def ingest(
    reader: LogReader,
    root: Path,
    writer: str,
    deployment: str,
    rows: Sequence[object],
    *,
    signature_of: Callable[[str, int], Signature],
    settle_s: float = 0.0,
    now: datetime | None = None,
) -> ActualsReport:
    """Store the valid rows of one posted batch as one actuals segment of `writer`.

    Ids not in the log yet are looked up once more after `settle_s` (answers may still sit
    in a worker's buffer). Each actual is typed by the signature of the version whose answer
    the caller received, and stored against every logged answer to its id (shadows too).
    """
    received_at = now or datetime.now(UTC)
    if received_at.tzinfo is None:
        received_at = received_at.replace(tzinfo=UTC)
    report = ActualsReport()
    posted = _check_rows(rows, report)
    answers = _find_answers(reader, deployment, posted, settle_s)
    found = set(answers.column("prediction_id").to_pylist())
    report.unknown = [p.prediction_id for p in posted if p.prediction_id not in found]
    known = [p for p in posted if p.prediction_id in found]
    typed = _type_actuals(known, answers, signature_of, report)
    report.rejected.sort(key=lambda r: int(r["index"]))
    if not typed:
        return report
    report.accepted = len(typed)
    report.replaced = len(reader.graded_ids(deployment, list(typed)))
    table = _actual_rows(answers, typed, deployment, received_at)
    segments.write_segment(root, ACTUALS, writer, table, now=received_at)
    return report


def parse_table(data: bytes, filename: str) -> list[dict[str, JSON]]:
    """Rows of an uploaded CSV or Parquet file with columns `prediction_id` and `actual`.

    The content decides the format (Parquet files start with `PAR1`), not the name, which
    is only used in messages. CSV cells are read as text (a label `NA` stays a label; an
    empty cell is a missing actual); labels are matched to a version's classes on ingest.
    """
    is_parquet = data[:4] == _PARQUET_MAGIC
    columns = _read_parquet(data, filename) if is_parquet else _read_csv(data, filename)
    missing = [c for c in COLUMNS if c not in columns]
    if missing:
        found = ", ".join(columns) or "none"
        raise BadRequest(
            f"{filename}: missing column {' and '.join(missing)} "
            f"(expected prediction_id, actual; found {found})"
        )
    return [
        {"prediction_id": pid, "actual": None if actual == "" else actual}
        for pid, actual in zip(columns["prediction_id"], columns["actual"], strict=True)
    ]


def _read_parquet(data: bytes, filename: str) -> dict[str, list[JSON]]:
    try:
        table = pq.read_table(io.BytesIO(data))
    except (pa.ArrowException, OSError) as error:
        raise BadRequest(f"{filename} is not a readable Parquet file: {error}") from None
    return {name: table.column(name).to_pylist() for name in table.column_names}


def _read_csv(data: bytes, filename: str) -> dict[str, list[JSON]]:
    if b"\x00" in data:
        raise BadRequest(f"{filename} is neither a CSV nor a Parquet file")
    try:
        text = data.decode("utf-8-sig")
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except UnicodeDecodeError:
        raise BadRequest(f"{filename} is neither UTF-8 text (CSV) nor a Parquet file") from None
    except pd.errors.EmptyDataError:
        raise BadRequest(f"{filename} is empty (expected columns prediction_id, actual)") from None
    except (pd.errors.ParserError, ValueError) as error:
        raise BadRequest(f"{filename} cannot be read as CSV: {error}") from None
    return {str(name): frame[name].tolist() for name in frame.columns}


def _check_rows(rows: Sequence[object], report: ActualsReport) -> list[Posted]:
    """The well-formed rows, the first of each prediction id; the others go to `rejected`."""
    posted: list[Posted] = []
    first_at: dict[str, int] = {}
    for index, row in enumerate(rows):
        named = row.get("prediction_id") if isinstance(row, dict) else None
        try:
            prediction_id, actual = _check_row(row)
            if prediction_id in first_at:
                at = first_at[prediction_id]
                raise Invalid(f"duplicate prediction id in this request (first at row {at})")
        except Invalid as error:
            report.reject(index, named if isinstance(named, str) else None, str(error))
            continue
        first_at[prediction_id] = index
        posted.append(Posted(index, prediction_id, actual))
    return posted


def _check_row(row: object) -> tuple[str, JSON]:
    if not isinstance(row, dict):
        raise Invalid(f"expected an object with prediction_id and actual, got {_kind(row)}")
    prediction_id = row.get("prediction_id")
    if prediction_id is None or prediction_id == "":
        raise Invalid("prediction_id is missing")
    if not isinstance(prediction_id, str):
        raise Invalid(f"prediction_id must be a string, got {_kind(prediction_id)}")
    if not PREDICTION_ID.fullmatch(prediction_id):
        raise Invalid("prediction_id must be 1 to 128 printable ASCII characters")
    actual = row.get("actual")
    if actual is None:
        raise Invalid("actual is missing")
    if isinstance(actual, dict | list):
        raise Invalid(f"actual must be a single value (label or number), got {_kind(actual)}")
    if not isinstance(actual, str | int | float):
        raise Invalid(f"actual must be a label or a number, got {_kind(actual)}")
    if isinstance(actual, float) and not math.isfinite(actual):
        raise Invalid(f"actual must be a finite number, got {actual}")
    return prediction_id, actual


def _kind(value: object) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    return names.get(type(value), "a number" if isinstance(value, int | float) else "a value")


def _find_answers(
    reader: LogReader, deployment: str, posted: list[Posted], settle_s: float
) -> pa.Table:
    """The logged answers to the posted ids; ids not found yet are looked up again once after
    `settle_s`."""
    ids = [p.prediction_id for p in posted]
    if not ids:
        return reader.lookup(deployment, [])
    answers = reader.lookup(deployment, ids)
    found = set(answers.column("prediction_id").to_pylist())
    missing = [i for i in ids if i not in found]
    if missing and settle_s > 0:
        time.sleep(settle_s)
        answers = pa.concat_tables([answers, reader.lookup(deployment, missing)])
    return answers


def _type_actuals(
    posted: list[Posted],
    answers: pa.Table,
    signature_of: Callable[[str, int], Signature],
    report: ActualsReport,
) -> dict[str, str]:
    """Prediction id -> the actual as JSON text, typed like the returned answer's outputs."""
    returned = _returned_answers(answers)
    signatures: dict[tuple[str, int], Signature] = {}
    typed: dict[str, str] = {}
    for item in posted:
        model, version = returned[item.prediction_id]
        if (model, version) not in signatures:
            signatures[model, version] = signature_of(model, version)
        try:
            value = typed_actual(item.actual, signatures[model, version], f"{model}:{version}")
        except Invalid as error:
            report.reject(item.index, item.prediction_id, str(error))
            continue
        typed[item.prediction_id] = orjson.dumps(value).decode()
    return typed


def _returned_answers(answers: pa.Table) -> dict[str, tuple[str, int]]:
    """(model, version) of the answer each caller received: the latest logged answer that is
    not a shadow's (or the latest of any role when only shadows answered)."""
    rows = answers.select(["prediction_id", "model", "version", "role", "ts"]).to_pylist()
    best: dict[str, tuple[bool, datetime, str, int]] = {}
    for row in rows:
        rank = (row["role"] != "shadow", row["ts"], row["model"], row["version"])
        current = best.get(row["prediction_id"])
        if current is None or rank[:2] > current[:2]:
            best[row["prediction_id"]] = rank
    return {pid: (rank[2], rank[3]) for pid, rank in best.items()}


def typed_actual(actual: JSON, signature: Signature, name: str) -> JSON:
    """The actual as the value the version would have answered, so that its JSON text equals
    the logged output when the prediction was right. Raises `Invalid` when it cannot be."""
    if signature.classes is not None:
        matched = _match_class(actual, signature.classes)
        if matched is _NO_MATCH:
            classes = ", ".join(str(c) for c in signature.classes)
            raise Invalid(f"label {str(actual)!r} is not a class of {name} (classes: {classes})")
        return matched
    return _as_output(actual, signature.output_dtype, name)


def _match_class(actual: JSON, classes: tuple[JSON, ...]) -> JSON:
    """The class `actual` names: the same value first, else by string or numeric form."""
    for label in classes:
        if type(label) is type(actual) and label == actual:
            return label
    for label in classes:
        if _same_label(actual, label):
            return label
    return _NO_MATCH


def _same_label(actual: JSON, label: JSON) -> bool:
    if isinstance(label, bool):
        return isinstance(actual, str) and actual.strip().lower() == str(label).lower()
    if isinstance(actual, bool):
        return False
    if isinstance(label, int | float):
        number = _number(actual)
        return number is not None and number == label
    if isinstance(label, str):
        if isinstance(actual, str):
            return actual.strip() == label
        number = _number(label)
        return number is not None and number == actual
    return False


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        number = float(str(value).strip())
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _as_output(actual: JSON, dtype: DType, name: str) -> JSON:
    """An actual for a version without class labels, typed by its output datatype."""
    if dtype is DType.BYTES:
        return actual if isinstance(actual, str) else orjson.dumps(actual).decode()
    if dtype is DType.BOOL:
        text = str(actual).strip().lower()
        if isinstance(actual, bool) or text in ("true", "false"):
            return actual if isinstance(actual, bool) else text == "true"
        raise Invalid(f"actual {str(actual)!r} is not a boolean ({name} answers true or false)")
    number = _number(actual)
    if number is None:
        raise Invalid(f"actual {str(actual)!r} is not a finite number ({name} answers numbers)")
    if dtype in (DType.INT32, DType.INT64):
        if not number.is_integer():
            raise Invalid(f"actual {str(actual)!r} is not an integer ({name} answers integers)")
        return int(number)
    return number


def _actual_rows(
    answers: pa.Table, typed: dict[str, str], deployment: str, received_at: datetime
) -> pa.Table:
    """One actuals row per logged answer to an accepted id, copied from the answer."""
    keys = pa.array(list(typed), pa.string())
    graded = answers.filter(pc.is_in(answers.column("prediction_id"), value_set=keys))
    position = pc.index_in(graded.column("prediction_id"), value_set=keys)
    actual = pa.array(list(typed.values()), pa.string()).take(position)
    count = graded.num_rows
    return pa.table(
        {
            "prediction_id": graded.column("prediction_id"),
            "deployment": pa.array([deployment] * count, pa.string()),
            "actual": actual,
            "received_at": pa.array([received_at] * count, ACTUAL_SCHEMA.field("received_at").type),
            "revision": graded.column("revision"),
            "model": graded.column("model"),
            "version": graded.column("version"),
            "role": graded.column("role"),
            "predicted_at": graded.column("ts"),
            "outcome": graded.column("outcome"),
            "output": graded.column("output"),
            "probabilities": graded.column("probabilities"),
        },
        schema=ACTUAL_SCHEMA,
    )
