from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from turnout.monitoring.layout import ACTUAL_SCHEMA, ACTUALS, PREDICTIONS
from turnout.monitoring.predlog import LogEntry, PredictionLogger, fast_table, prediction_table
from turnout.monitoring.segments import live_files, write_segment
from turnout.registry.flavors import Prediction
from turnout.types import Array


def entry(
    ids: list[str],
    *,
    deployment: str = "churn",
    rows: Array | None = None,
    prediction: Prediction | None = None,
    role: str = "champion",
    outcome: str = "ok",
    error: str | None = None,
    ts: float = 1_700_000_000.123456,
) -> LogEntry:
    return LogEntry(
        deployment=deployment,
        revision=4,
        model="churn-model",
        version=2,
        role=role,
        ids=ids,
        ts=ts,
        latency_ms=1.25,
        outcome=outcome,
        rows=rows,
        prediction=prediction,
        error=error,
    )


def ids(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


def read(root: Path, deployment: str, kind: str = PREDICTIONS) -> dict[str, dict[str, Any]]:
    """Every logged row of a deployment by prediction id, read back by DuckDB."""
    files = [str(path) for path in live_files(root, kind, deployment)]
    if not files:
        return {}
    cursor = duckdb.connect().execute(
        "SELECT * FROM read_parquet(?, hive_partitioning = false) WHERE deployment = ?",
        [files, deployment],
    )
    names = [column[0] for column in cursor.description]
    rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    by_id = {row["prediction_id"]: row for row in rows}
    assert len(by_id) == len(rows), "a prediction id was logged twice"
    return by_id


@pytest.fixture
def logger(tmp_path: Path) -> PredictionLogger:
    return PredictionLogger(tmp_path, "w0")


def test_every_column_round_trips(tmp_path: Path, logger: PredictionLogger) -> None:
    rng = np.random.default_rng(7)
    floats = rng.normal(size=(3, 30)) * 1e3
    floats[1, 4] = np.nan
    mixed = np.array([["red", 1, 2.5, None], ["blue", -3, 1e-300, 'x"y']], dtype=object)
    probabilities = rng.dirichlet([1, 1, 1], size=3)
    logger.record(
        entry(
            ids("f", 3),
            rows=floats,
            prediction=Prediction(np.array([0, 2, 1]), probabilities),
        )
    )
    logger.record(
        entry(
            ids("s", 2), rows=mixed, prediction=Prediction(np.array(["yes", 'n"o'])), role="shadow"
        )
    )
    logger.record(
        entry(
            ids("b", 2), rows=np.array([[1], [0]]), prediction=Prediction(np.array([True, False]))
        )
    )
    logger.record(entry(ids("r", 2), rows=None, prediction=Prediction(np.array([0.1, 2.5e-7]))))
    logger.record(entry(["e0"], rows=floats[:1], outcome="timeout", error="took too long"))
    logger.record(entry(["n0"], deployment="fraud", role="challenger"))

    assert logger.flush() == 11
    assert logger.stats() == {
        "buffered": 0,
        "written": 11,
        "dropped": 0,
        "segments": 1,  # both deployments in one file
        "last_error": None,
    }
    churn = read(tmp_path, "churn")
    assert sorted(churn) == sorted([*ids("f", 3), *ids("s", 2), *ids("b", 2), *ids("r", 2), "e0"])

    for i in range(3):
        row = churn[f"f{i}"]
        decoded = np.array(orjson.loads(row["inputs"]), dtype=float)
        np.testing.assert_array_equal(decoded, floats[i])  # exact, NaN as null
        assert orjson.loads(row["output"]) == [0, 2, 1][i]
        assert row["probabilities"] == probabilities[i].tolist()
        assert row["deployment"] == "churn"
        assert (row["revision"], row["model"], row["version"]) == (4, "churn-model", 2)
        assert (row["role"], row["outcome"], row["error"]) == ("champion", "ok", None)
        assert row["latency_ms"] == pytest.approx(1.25)
        assert row["ts"] == datetime(2023, 11, 14, 22, 13, 20, 123456, tzinfo=UTC)
    assert orjson.loads(churn["f1"]["inputs"])[4] is None

    assert orjson.loads(churn["s0"]["inputs"]) == ["red", 1, 2.5, None]
    assert orjson.loads(churn["s1"]["inputs"]) == ["blue", -3, 1e-300, 'x"y']
    assert [orjson.loads(churn[i]["output"]) for i in ("s0", "s1")] == ["yes", 'n"o']
    assert churn["s0"]["role"] == "shadow"
    assert churn["s0"]["probabilities"] is None

    assert [orjson.loads(churn[i]["output"]) for i in ("b0", "b1")] == [True, False]
    assert [orjson.loads(churn[i]["inputs"]) for i in ("b0", "b1")] == [[1], [0]]
    assert [orjson.loads(churn[i]["output"]) for i in ("r0", "r1")] == [0.1, 2.5e-7]
    assert churn["r0"]["inputs"] is None

    failed = churn["e0"]
    assert (failed["outcome"], failed["error"]) == ("timeout", "took too long")
    assert failed["output"] is None
    assert failed["probabilities"] is None
    assert failed["inputs"] is not None

    fraud = read(tmp_path, "fraud")
    assert list(fraud) == ["n0"]
    assert fraud["n0"]["inputs"] is None
    assert fraud["n0"]["output"] is None
    assert fraud["n0"]["role"] == "challenger"


def test_labels_keep_their_types() -> None:
    cases: list[tuple[Array, list[Any]]] = [
        (np.array([1, 0], dtype=np.int64), [1, 0]),
        (np.array([3, 4], dtype=np.uint8), [3, 4]),
        (np.array([0.5, np.nan]), [0.5, None]),
        (np.array([0.25], dtype=np.float32), [0.25]),
        (np.array(["a", "ü"]), ["a", "ü"]),
        (np.array(["a", 2, True, None, 1.5], dtype=object), ["a", 2, True, None, 1.5]),
        (np.array([np.int64(5), np.float64(0.5)], dtype=object), [5, 0.5]),
        (np.array([False, True]), [False, True]),
        (np.array([[1.0, 2.0], [3.0, 4.0]]), [[1.0, 2.0], [3.0, 4.0]]),
        (np.array([1, 2], dtype=">i4"), [1, 2]),
    ]
    for values, expected in cases:
        table = prediction_table("d", [entry(ids("x", len(values)), prediction=Prediction(values))])
        assert [orjson.loads(text) for text in table.column("output").to_pylist()] == expected


def test_many_small_and_mixed_entries_keep_row_order() -> None:
    """Entries of different shapes and dtypes interleave; every row keeps its own text."""
    entries = []
    expected: list[Any] = []
    for i in range(300):
        if i % 3 == 0:
            rows: Array | None = np.full((2, 3), i, dtype=np.int32)
            expected += [[i, i, i]] * 2
            entries.append(entry([f"{i}a", f"{i}b"], rows=rows))
        elif i % 3 == 1:
            rows = np.array([[f"s{i}", i]], dtype=object)
            expected.append([f"s{i}", i])
            entries.append(entry([f"{i}"], rows=rows))
        else:
            expected.append(None)
            entries.append(entry([f"{i}"], rows=None))
    inputs = prediction_table("d", entries).column("inputs").to_pylist()
    assert [None if text is None else orjson.loads(text) for text in inputs] == expected


def test_marker_inside_the_data_is_still_encoded_right() -> None:
    rows = np.array([["\x00\x1f", "a"], ["b", "\x00\x1f"]], dtype=object)
    table = prediction_table("d", [entry(["x", "y"], rows=rows)])
    decoded = [orjson.loads(text) for text in table.column("inputs").to_pylist()]
    assert decoded == [["\x00\x1f", "a"], ["b", "\x00\x1f"]]


def test_full_buffer_drops_and_counts_exactly(tmp_path: Path) -> None:
    logger = PredictionLogger(tmp_path, "w0", max_buffered_rows=10)
    for i in range(5):
        logger.record(entry(ids(f"{i}-", 3)))  # 3 fit (9 rows), 2 do not (6 rows)
    logger.record(entry(["last"]))  # 10 rows exactly
    logger.record(entry(["over"]))
    assert logger.stats()["buffered"] == 10
    assert logger.stats()["dropped"] == 7
    assert logger.flush() == 10
    assert len(read(tmp_path, "churn")) == 10
    logger.record(entry(ids("again", 10)))  # room again once written
    assert logger.stats()["buffered"] == 10


def test_a_half_full_buffer_wakes_the_writer_early(tmp_path: Path) -> None:
    logger = PredictionLogger(tmp_path, "w0", max_buffered_rows=100, flush_interval_s=60)
    logger.start()
    logger.record(entry(ids("a", 30)))
    time.sleep(0.05)
    assert logger.stats()["written"] == 0
    logger.record(entry(ids("b", 30)))
    wait_for(lambda: logger.stats()["written"] == 60)
    logger.close()


def test_close_writes_everything_and_is_idempotent(tmp_path: Path) -> None:
    logger = PredictionLogger(tmp_path, "w0", flush_interval_s=60)
    logger.start()
    for i in range(50):
        logger.record(entry(ids(f"{i}-", 2)))
    logger.close()
    assert len(read(tmp_path, "churn")) == 100
    logger.record(entry(["late"]))
    logger.close()
    assert logger.stats() == {
        "buffered": 0,
        "written": 100,
        "dropped": 1,
        "segments": 1,
        "last_error": None,
    }
    logger.start()  # a closed logger stays closed
    assert not [t for t in threading.enumerate() if t.name == "turnout-predlog-w0"]


def test_close_compacts_this_hour_of_this_writer_only(tmp_path: Path) -> None:
    """Closing compacts the current hour of the worker's predictions and of the actuals its
    API took (no more come once the worker stops); other writers' files stay as they are."""
    other = PredictionLogger(tmp_path, "w1")
    other.record(entry(["other"]))
    other.flush()
    actual = {"prediction_id": "a", "deployment": "churn", "actual": "1",
              "received_at": datetime.now(UTC)}  # fmt: skip
    for _ in range(2):
        write_segment(tmp_path, ACTUALS, "w0", pa.Table.from_pylist([actual], schema=ACTUAL_SCHEMA))
    logger = PredictionLogger(tmp_path, "w0")
    for i in range(3):
        logger.record(entry([f"p{i}"]))
        logger.flush()
    logger.close()
    files = [path.name for path in (tmp_path / PREDICTIONS).glob("*/*.parquet")]
    assert [name for name in files if name.startswith("w0-")]
    assert all(name.endswith(".compact.parquet") for name in files if name.startswith("w0-"))
    assert [name for name in files if name.startswith("w1-") and name.count("-") == 2]
    assert sorted(read(tmp_path, "churn")) == ["other", "p0", "p1", "p2"]
    actual_files = [path.name for path in (tmp_path / ACTUALS).glob("*/*.parquet")]
    assert len(actual_files) == 1
    assert actual_files[0].endswith(".compact.parquet")


def test_failed_write_keeps_rows_and_the_thread(tmp_path: Path) -> None:
    obstacle = tmp_path / PREDICTIONS
    obstacle.write_text("not a folder")  # no day folder can be made
    logger = PredictionLogger(tmp_path, "w0", max_buffered_rows=25, flush_interval_s=0.01)
    logger.start()
    logger.record(entry(ids("a", 10)))
    logger.record(entry(ids("f", 5), deployment="fraud"))
    wait_for(lambda: logger.stats()["last_error"] is not None)
    assert "prediction log write failed" in str(logger.stats()["last_error"])
    logger.record(entry(ids("b", 10)))
    logger.record(entry(ids("c", 10)))  # 15 + 10 held: no room for 10 more
    assert logger.stats()["dropped"] == 10
    time.sleep(0.05)
    assert (logger.stats()["buffered"], logger.stats()["written"]) == (25, 0)
    assert any(t.name == "turnout-predlog-w0" and t.is_alive() for t in threading.enumerate())

    obstacle.unlink()
    wait_for(lambda: logger.stats()["buffered"] == 0)
    logger.close()
    assert sorted(read(tmp_path, "churn")) == sorted([*ids("a", 10), *ids("b", 10)])
    assert sorted(read(tmp_path, "fraud")) == ids("f", 5)
    assert logger.stats()["written"] == 25
    assert logger.stats()["dropped"] == 10


def test_rows_that_cannot_be_written_at_close_are_counted_as_dropped(tmp_path: Path) -> None:
    (tmp_path / PREDICTIONS).write_text("not a folder")
    logger = PredictionLogger(tmp_path, "w0")
    logger.record(entry(ids("a", 4)))
    logger.close()
    stats = logger.stats()
    assert (stats["buffered"], stats["written"], stats["dropped"]) == (0, 0, 4)
    assert stats["last_error"] is not None


def test_an_entry_that_cannot_be_encoded_is_dropped_alone(tmp_path: Path) -> None:
    logger = PredictionLogger(tmp_path, "w0")
    logger.record(entry(ids("ok", 2), rows=np.zeros((2, 3))))
    logger.record(entry(ids("bad", 2), rows=np.zeros((3, 3))))  # 3 rows for 2 ids
    logger.record(entry(["ok2"], prediction=Prediction(np.array([1]))))
    assert logger.flush() == 3
    stats = logger.stats()
    assert (stats["buffered"], stats["written"], stats["dropped"]) == (0, 3, 2)
    assert "3 input rows for 2 prediction ids" in str(stats["last_error"])
    assert sorted(read(tmp_path, "churn")) == ["ok0", "ok1", "ok2"]


def test_rows_recorded_while_the_writer_runs_land_exactly_once(tmp_path: Path) -> None:
    logger = PredictionLogger(tmp_path, "w0", flush_interval_s=0.005)
    logger.start()
    row = np.arange(5, dtype=np.float64).reshape(1, 5)
    prediction = Prediction(np.array([1]), np.array([[0.25, 0.75]]))

    def produce(prefix: str, n: int) -> None:
        for i in range(n):
            logger.record(
                entry([f"{prefix}{i}"], deployment=f"d{i % 2}", rows=row, prediction=prediction)
            )

    producers = [threading.Thread(target=produce, args=(p, 50_000)) for p in "ab"]
    for producer in producers:
        producer.start()
    for producer in producers:
        producer.join()
    logger.close()
    stats = logger.stats()
    assert (stats["written"], stats["dropped"], stats["buffered"]) == (100_000, 0, 0)
    assert int(stats["segments"] or 0) > 1  # written while recording went on, not only at close
    files = sorted({str(f) for d in ("d0", "d1") for f in live_files(tmp_path, PREDICTIONS, d)})
    total, distinct = duckdb.connect().execute(
        "SELECT count(*), count(DISTINCT prediction_id) FROM read_parquet(?)", [files]
    ).fetchone() or (0, 0)
    assert total == distinct == 100_000


def wait_for(condition: Any, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.005)


def test_the_fast_encoding_gives_the_same_table_as_the_general_one() -> None:
    """One-row and many-row requests, rows with NaN, absent payloads, failures: the
    vectorized path and the general path write identical rows."""
    rng = np.random.default_rng(0)
    features = rng.normal(size=(9, 4))
    features[2, 1] = np.nan
    cases = [
        entry(["a"], rows=features[:1],
              prediction=Prediction(np.array([1]), np.array([[0.2, 0.8]]))),
        entry(["b0", "b1", "b2"], rows=features[1:4],
              prediction=Prediction(np.array([0, 1, 1]), rng.random((3, 2)))),
        entry(["c"], outcome="error", error="boom"),  # failed: no payload
        entry(["d"], rows=features[4:5], prediction=Prediction(np.array([0]), rng.random((1, 2))),
              role="shadow"),
        entry(["é-unicode"], rows=features[5:6],
              prediction=Prediction(np.array([1]), rng.random((1, 2)))),
    ]  # fmt: skip
    fast = fast_table("churn", cases)
    assert fast is not None
    assert fast.equals(prediction_table("churn", cases))
    regression = [
        entry(["r0"], rows=features[6:7], prediction=Prediction(np.array([2.5]))),
        entry(["r1"], rows=features[7:9][:1], prediction=Prediction(np.array([-1.0]))),
        entry(["r2"]),  # payload not logged
    ]
    fast = fast_table("churn", regression)
    assert fast is not None
    assert fast.equals(prediction_table("churn", regression))
    labels = [entry(["s"], rows=features[:1], prediction=Prediction(np.array(["yes"])))]
    fast = fast_table("churn", labels)
    assert fast is not None
    assert fast.equals(prediction_table("churn", labels))
    mixed = [  # rows of different widths: left to the general path
        entry(["m0"], rows=features[:1]),
        entry(["m1"], rows=features[:1, :2]),
    ]
    assert fast_table("churn", mixed) is None
    objects = [entry(["o"], rows=np.array([["x", 1.0]], dtype=object))]
    assert fast_table("churn", objects) is None


def test_a_writer_process_writes_the_same_rows_and_survives_being_killed(tmp_path: Path) -> None:
    """The separate writer process gives the rows the in-process writer gives; killed
    between flushes it is restarted and nothing is lost; closing compacts."""
    rng = np.random.default_rng(1)
    batches = [
        [entry([f"a{i}"], rows=rng.normal(size=(1, 3)),
               prediction=Prediction(np.array([i % 2]), rng.random((1, 2)))) for i in range(50)],
        [entry(["f"], outcome="error", error="boom"),
         entry(["s"], rows=np.array([["x", 1.0]], dtype=object),
               prediction=Prediction(np.array(["yes"])))],
    ]  # fmt: skip
    here, there = tmp_path / "thread", tmp_path / "process"
    in_thread = PredictionLogger(here, "w0")
    in_process = PredictionLogger(there, "w0", process=True)
    for batch in batches:
        for item in batch:
            in_thread.record(item)
            in_process.record(item)
        in_thread.flush()
        in_process.flush()
        child = in_process._writer_process._process  # type: ignore[union-attr]
        assert child is not None
        child.kill()  # the next flush starts another one
        child.wait()
    in_process.record(entry(["last"]))
    in_thread.record(entry(["last"]))
    in_thread.close()
    in_process.close()
    assert in_process.stats()["written"] == in_thread.stats()["written"] == 53
    assert in_process.stats()["dropped"] == 0
    assert read(there, "churn") == read(here, "churn")
    names = [p.name for p in (there / PREDICTIONS).glob("*/*.parquet")]
    assert len(names) == 1
    assert names[0].endswith(".compact.parquet")


@pytest.mark.parametrize("process", [False, True], ids=["thread", "process"])
def test_one_flush_writes_one_file_for_every_deployment(tmp_path: Path, process: bool) -> None:
    """50 deployments, models of different widths and label types: one file, its rows
    sorted by deployment then time, each deployment's rows as logged."""
    logger = PredictionLogger(tmp_path, "w0", process=process)
    rng = np.random.default_rng(3)
    logged: dict[str, list[str]] = {}
    for i in range(200):
        deployment = f"d{(i * 7) % 50:02d}"
        width = 1 + int(deployment[1:]) % 4
        labels = np.array(["yes"]) if width == 4 else np.array([i % 2])
        pid = f"p{i:03d}"
        logged.setdefault(deployment, []).append(pid)
        logger.record(
            entry([pid], deployment=deployment, rows=rng.normal(size=(1, width)),
                  prediction=Prediction(labels), ts=1_700_000_000.0 - i)
        )  # fmt: skip
    assert logger.flush() == 200
    logger.close()

    files = list((tmp_path / PREDICTIONS).rglob("*.parquet"))
    assert len(files) == 1
    assert logger.stats()["segments"] == 1
    table = pq.read_table(files[0])
    keys = [
        (row["deployment"], row["ts"]) for row in table.select(["deployment", "ts"]).to_pylist()
    ]
    assert keys == sorted(keys)
    assert len(logged) == 50
    for deployment, expected in logged.items():
        assert sorted(read(tmp_path, deployment)) == sorted(expected)
