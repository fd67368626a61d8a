from __future__ import annotations

import io
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import accuracy_score

from tests.monitoring.test_query import DEPLOYMENT, T0, answer, summarise, write
from turnout.errors import BadRequest
from turnout.monitoring import segments
from turnout.monitoring.actuals import ActualsReport, Invalid, ingest, parse_table, typed_actual
from turnout.monitoring.layout import ACTUALS
from turnout.monitoring.query import LogReader
from turnout.registry.signature import DType, Signature, unnamed_columns

BINARY = Signature(columns=unnamed_columns(2), named=False, classes=(0, 1))


def signature(**fields: Any) -> Signature:
    return Signature(columns=unnamed_columns(2), named=False, **fields)


class Signatures:
    """`signature_of` for the tests: every version is a 0/1 classifier unless told otherwise;
    remembers which versions were asked for."""

    def __init__(self, **by_version: Signature) -> None:
        self.by_version = by_version
        self.asked: list[tuple[str, int]] = []

    def __call__(self, model: str, version: int) -> Signature:
        self.asked.append((model, version))
        return self.by_version.get(f"v{version}", BINARY)


@pytest.fixture
def reader(tmp_path: Path) -> LogReader:
    return LogReader(tmp_path)


def post(reader: LogReader, rows: list[Any], **options: Any) -> ActualsReport:
    options.setdefault("signature_of", Signatures())
    options.setdefault("now", T0 + timedelta(hours=1))
    return ingest(reader, reader.root, "api", DEPLOYMENT, rows, **options)


def actual_files(root: Path) -> list[Path]:
    return segments.live_files(root, ACTUALS, DEPLOYMENT)


def traffic(root: Path, count: int, seed: int) -> list[dict[str, Any]]:
    """Champion answers (some failing over to version 2), and a shadow copy of each."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(count):
        pid, ts = f"id{i:04d}", T0 + timedelta(seconds=i)
        if i % 17 == 0:
            rows.append(answer(pid, ts=ts, outcome="error", output=None, probabilities=None))
            ts += timedelta(milliseconds=3)
            rows.append(answer(pid, ts=ts, role="failover", version=2, output=f"{i % 2}"))
        else:
            rows.append(answer(pid, ts=ts, output=str(rng.integers(2))))
        shadow_output = str(rng.integers(2))
        rows.append(answer(pid, ts=ts, role="shadow", version=5, output=shadow_output))
    write(root, rows)
    return rows


def expected_accuracy(
    rows: list[dict[str, Any]], actuals: dict[str, int]
) -> dict[tuple[int, str], tuple[int, float]]:
    """(graded rows, sklearn accuracy over those with an output) per (version, role)."""
    groups: dict[tuple[int, str], list[tuple[int, str | None]]] = {}
    for row in rows:
        if row["prediction_id"] in actuals:
            key = (row["version"], row["role"])
            groups.setdefault(key, []).append((actuals[row["prediction_id"]], row["output"]))
    result = {}
    for key, pairs in groups.items():
        answered = [(str(truth), out) for truth, out in pairs if out is not None]
        truth, predicted = zip(*answered, strict=True) if answered else ((), ())
        result[key] = (len(pairs), accuracy_score(truth, predicted) if answered else None)
    return result


def summary_accuracy(reader: LogReader) -> dict[tuple[int, str], tuple[int, float]]:
    return {
        (g["version"], g["role"]): (g["actuals"], g["accuracy"])
        for g in summarise(reader, DEPLOYMENT)
        if g["actuals"]
    }


def assert_same_grades(
    found: dict[tuple[int, str], tuple[int, float]],
    expected: dict[tuple[int, str], tuple[int, float]],
) -> None:
    assert {k: n for k, (n, _) in found.items()} == {k: n for k, (n, _) in expected.items()}
    assert {k: a for k, (_, a) in found.items()} == pytest.approx(
        {k: a for k, (_, a) in expected.items()}
    )


def test_summary_accuracy_equals_sklearn_per_version_and_role(
    tmp_path: Path, reader: LogReader
) -> None:
    rows = traffic(tmp_path, 300, seed=1)
    rng = np.random.default_rng(2)
    actuals = {f"id{i:04d}": int(rng.integers(2)) for i in rng.choice(300, 200, replace=False)}

    report = post(reader, [{"prediction_id": k, "actual": v} for k, v in actuals.items()])

    assert report.to_dict() == {"accepted": 200, "replaced": 0, "unknown": [], "rejected": []}
    assert_same_grades(summary_accuracy(reader), expected_accuracy(rows, actuals))
    assert {(2, "failover"), (3, "champion"), (5, "shadow")} <= set(summary_accuracy(reader))
    assert len(actual_files(tmp_path)) == 1


def test_the_latest_actual_wins_and_reposting_changes_nothing(
    tmp_path: Path, reader: LogReader
) -> None:
    rows = traffic(tmp_path, 100, seed=3)
    actuals = {f"id{i:04d}": i % 2 for i in range(60)}
    posted = [{"prediction_id": k, "actual": v} for k, v in actuals.items()]
    post(reader, posted)
    before = summary_accuracy(reader)

    again = post(reader, posted, now=T0 + timedelta(hours=2))

    assert (again.accepted, again.replaced) == (60, 60)
    assert summary_accuracy(reader) == before
    flipped = {k: 1 - v for k, v in list(actuals.items())[:20]}
    report = post(
        reader,
        [{"prediction_id": k, "actual": str(v)} for k, v in flipped.items()]
        + [{"prediction_id": "id0099", "actual": "1"}],
        now=T0 + timedelta(hours=3),
    )
    assert (report.accepted, report.replaced) == (21, 20)
    latest = {**actuals, **flipped, "id0099": 1}
    assert_same_grades(summary_accuracy(reader), expected_accuracy(rows, latest))
    assert reader.graded(DEPLOYMENT).num_rows == sum(r["prediction_id"] in latest for r in rows)


def test_bad_rows_are_rejected_and_valid_rows_kept(tmp_path: Path, reader: LogReader) -> None:
    write(
        tmp_path,
        [answer("id1"), answer("id1", role="shadow", version=5), answer("id2"), answer("id3")],
    )
    rows: list[Any] = [
        "not an object",
        {"actual": 1},
        {"prediction_id": "", "actual": 1},
        {"prediction_id": 7, "actual": 1},
        {"prediction_id": "x" * 129, "actual": 1},
        {"prediction_id": "id\n1", "actual": 1},
        {"prediction_id": "id1"},
        {"prediction_id": "id1", "actual": [1]},
        {"prediction_id": "id1", "actual": {"label": 1}},
        {"prediction_id": "id1", "actual": float("nan")},
        {"prediction_id": "id1", "actual": 1},
        {"prediction_id": "id1", "actual": 0},
        {"prediction_id": "id2", "actual": 7},
        {"prediction_id": "nope", "actual": 1},
        {"prediction_id": "id3", "actual": "1"},
    ]

    report = post(reader, rows)

    errors = {r["index"]: (r["prediction_id"], r["error"]) for r in report.rejected}
    assert sorted(errors) == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12]
    assert errors[0] == (None, "expected an object with prediction_id and actual, got a string")
    assert errors[1] == (None, "prediction_id is missing")
    assert errors[2] == ("", "prediction_id is missing")
    assert errors[3] == (None, "prediction_id must be a string, got a number")
    assert "printable ASCII" in errors[4][1]
    assert "printable ASCII" in errors[5][1]
    assert errors[6] == ("id1", "actual is missing")
    assert "single value" in errors[7][1]
    assert "single value" in errors[8][1]
    assert errors[9] == ("id1", "actual must be a finite number, got nan")
    assert errors[11] == ("id1", "duplicate prediction id in this request (first at row 10)")
    assert errors[12] == ("id2", "label '7' is not a class of churn:3 (classes: 0, 1)")
    assert (report.accepted, report.replaced, report.unknown) == (2, 0, ["nope"])
    graded = reader.graded(DEPLOYMENT).select(["prediction_id", "role", "actual"]).to_pylist()
    assert sorted(graded, key=lambda r: (r["prediction_id"], r["role"])) == [
        {"prediction_id": "id1", "role": "champion", "actual": "1"},
        {"prediction_id": "id1", "role": "shadow", "actual": "1"},
        {"prediction_id": "id3", "role": "champion", "actual": "1"},
    ]
    assert len(actual_files(tmp_path)) == 1


def test_nothing_is_written_when_no_row_is_usable(tmp_path: Path, reader: LogReader) -> None:
    write(tmp_path, [answer("id1")])

    report = post(
        reader,
        [{"prediction_id": "nope", "actual": 1}, {"prediction_id": "id1", "actual": "maybe"}, 3],
    )

    assert report.accepted == 0
    assert report.unknown == ["nope"]
    assert [r["index"] for r in report.rejected] == [1, 2]
    assert actual_files(tmp_path) == []
    assert post(reader, []).to_dict() == ActualsReport().to_dict()


def test_ids_still_buffered_are_found_after_settling(tmp_path: Path, reader: LogReader) -> None:
    write(tmp_path, [answer("early")])
    late = threading.Timer(0.2, write, args=(tmp_path, [answer("late")]), kwargs={"writer": "w2"})
    late.start()
    try:
        rows = [{"prediction_id": "early", "actual": 1}, {"prediction_id": "late", "actual": 0}]
        report = post(reader, rows, settle_s=0.6)
    finally:
        late.join()

    assert (report.accepted, report.unknown) == (2, [])
    assert post(reader, [{"prediction_id": "never", "actual": 1}], settle_s=0.05).unknown == [
        "never"
    ]


def test_an_actual_is_typed_by_the_version_that_answered(tmp_path: Path, reader: LogReader) -> None:
    write(
        tmp_path,
        [
            answer("a", outcome="timeout", output=None, probabilities=None),
            answer("a", role="failover", version=2, output='"yes"'),
            answer("a", role="shadow", version=5, ts=T0 + timedelta(seconds=1)),
        ],
    )
    signatures = Signatures(v2=signature(classes=("no", "yes")))

    report = post(reader, [{"prediction_id": "a", "actual": "yes"}], signature_of=signatures)

    assert report.accepted == 1
    assert signatures.asked == [("churn", 2)]
    rows = reader.graded(DEPLOYMENT).select(["role", "actual", "output"]).to_pylist()
    assert sorted(rows, key=lambda r: r["role"]) == [
        {"role": "champion", "actual": '"yes"', "output": None},
        {"role": "failover", "actual": '"yes"', "output": '"yes"'},
        {"role": "shadow", "actual": '"yes"', "output": "1"},
    ]


@pytest.mark.parametrize(
    ("classes", "posted", "stored"),
    [
        ((0, 1), 1, "1"),
        ((0, 1), "1", "1"),
        ((0, 1), "1.0", "1"),
        ((0, 1), 1.0, "1"),
        ((0.0, 1.0), "1", "1.0"),
        ((True, False), "true", "true"),
        ((True, False), "False", "false"),
        ((True, False), True, "true"),
        (("no", "yes"), "yes", '"yes"'),
        (("no", "yes"), " yes", '"yes"'),
        (("NA", "ok"), "NA", '"NA"'),
        (("0", "1"), 1, '"1"'),
        (("0", "1"), "1", '"1"'),
    ],
)
def test_labels_match_classes_by_value_or_string_form(
    classes: tuple[Any, ...], posted: Any, stored: str
) -> None:
    typed = typed_actual(posted, signature(classes=classes), "churn:3")

    assert orjson.dumps(typed).decode() == stored


@pytest.mark.parametrize(
    ("classes", "posted"),
    [((0, 1), True), ((0, 1), "yes"), ((0, 1), 2), ((True, False), 1), (("no", "yes"), 1)],
)
def test_labels_no_class_names_are_refused(classes: tuple[Any, ...], posted: Any) -> None:
    with pytest.raises(Invalid, match=r"is not a class of churn:3 \(classes: "):
        typed_actual(posted, signature(classes=classes), "churn:3")


@pytest.mark.parametrize(
    ("dtype", "posted", "stored"),
    [
        (DType.FP64, "3.5", "3.5"),
        (DType.FP64, 3, "3.0"),
        (DType.FP32, " 2.25 ", "2.25"),
        (DType.INT64, "3", "3"),
        (DType.INT64, 4.0, "4"),
        (DType.BOOL, "True", "true"),
        (DType.BYTES, "high", '"high"'),
    ],
)
def test_actuals_without_classes_follow_the_output_type(
    dtype: DType, posted: Any, stored: str
) -> None:
    typed = typed_actual(posted, signature(output_dtype=dtype), "price:1")

    assert orjson.dumps(typed).decode() == stored


@pytest.mark.parametrize(
    ("dtype", "posted", "message"),
    [
        (DType.FP64, "abc", "'abc' is not a finite number"),
        (DType.FP64, "inf", "'inf' is not a finite number"),
        (DType.FP64, True, "'True' is not a finite number"),
        (DType.INT64, "3.5", "'3.5' is not an integer"),
        (DType.BOOL, "yes", "'yes' is not a boolean"),
    ],
)
def test_actuals_of_the_wrong_type_are_refused(dtype: DType, posted: Any, message: str) -> None:
    with pytest.raises(Invalid, match=message):
        typed_actual(posted, signature(output_dtype=dtype), "price:1")


def test_a_csv_file_grades_like_json(tmp_path: Path, reader: LogReader) -> None:
    write(tmp_path, [answer("a", output="1"), answer("b", output="0"), answer("c")])
    data = b"\xef\xbb\xbfprediction_id,actual,note\na,1,x\nb,1.0,\nc,,empty\n"

    report = post(reader, parse_table(data, "labels.csv"))

    assert report.accepted == 2
    assert report.rejected == [{"index": 2, "prediction_id": "c", "error": "actual is missing"}]
    [group] = summarise(reader, DEPLOYMENT)
    assert (group["actuals"], group["correct"], group["accuracy"]) == (2, 1, 0.5)


def test_parse_table_reads_csv_as_text() -> None:
    data = b"prediction_id,actual\nid1,1\nid2,NA\nid3,\nid4,yes\n"

    assert parse_table(data, "actuals.csv") == [
        {"prediction_id": "id1", "actual": "1"},
        {"prediction_id": "id2", "actual": "NA"},
        {"prediction_id": "id3", "actual": None},
        {"prediction_id": "id4", "actual": "yes"},
    ]


def test_parse_table_trusts_the_content_over_the_name() -> None:
    rows = parse_table(b"prediction_id,actual\nid1,1\n", "actuals.parquet")

    assert rows == [{"prediction_id": "id1", "actual": "1"}]


def test_parse_table_reads_parquet_with_its_types() -> None:
    table = pa.table(
        {"prediction_id": ["id1", "id2", "id3"], "actual": [1.0, None, 2.5], "extra": [1, 2, 3]}
    )
    buffer = io.BytesIO()
    pq.write_table(table, buffer)

    assert parse_table(buffer.getvalue(), "upload") == [
        {"prediction_id": "id1", "actual": 1.0},
        {"prediction_id": "id2", "actual": None},
        {"prediction_id": "id3", "actual": 2.5},
    ]


@pytest.mark.parametrize(
    ("data", "filename", "message"),
    [
        (b"prediction_id,label\nid1,1\n", "a.csv", "a.csv: missing column actual"),
        (b"id,label\nid1,1\n", "a.csv", "missing column prediction_id and actual"),
        (b"", "a.csv", "a.csv is empty"),
        (bytes(range(256)) * 8, "a.bin", "neither a CSV nor a Parquet file"),
        (b"\xff\xfe\xfa garbage", "a.csv", "neither UTF-8 text"),
        (b'prediction_id,actual\n"id1,1\n', "a.csv", "cannot be read as CSV"),
        (b"PAR1 not really parquet", "a.parquet", "not a readable Parquet file"),
    ],
)
def test_parse_table_refuses_unreadable_files(data: bytes, filename: str, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        parse_table(data, filename)


def test_actuals_are_received_now_by_default(tmp_path: Path, reader: LogReader) -> None:
    write(tmp_path, [answer("a")])
    before = datetime.now(UTC)

    ingest(
        reader,
        tmp_path,
        "api",
        DEPLOYMENT,
        [{"prediction_id": "a", "actual": 1}],
        signature_of=Signatures(),
    )

    [received] = reader.graded(DEPLOYMENT).column("received_at").to_pylist()
    assert before <= received <= datetime.now(UTC)
