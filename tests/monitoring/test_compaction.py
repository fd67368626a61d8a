from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from turnout.monitoring import compaction
from turnout.monitoring.compaction import compact_writer, expire, journal_path
from turnout.monitoring.encoding import LogEntry, prediction_table
from turnout.monitoring.layout import ACTUAL_SCHEMA, ACTUALS, PREDICTION_SCHEMA, PREDICTIONS
from turnout.monitoring.segments import live_files, write_atomically, write_segment
from turnout.registry.flavors import Prediction

DAY = datetime(2026, 3, 14, tzinfo=UTC)


def at(hour: int, minute: int = 0, *, days: int = 0) -> datetime:
    return DAY + timedelta(days=days, hours=hour, minutes=minute)


def predictions(
    prefix: str, n: int, *, ts: float = 1_773_450_000.0, deployment: str = "churn"
) -> pa.Table:
    entries = [
        LogEntry(
            deployment=deployment,
            revision=1,
            model="churn",
            version=3,
            role="champion",
            ids=[f"{prefix}-{i}"],
            ts=ts - i,  # newest first: compaction sorts them
            latency_ms=2.0,
            outcome="ok",
            rows=np.array([[i, 0.5]]),
            prediction=Prediction(np.array([i % 2]), np.array([[0.4, 0.6]])),
        )
        for i in range(n)
    ]
    return prediction_table(deployment, entries)


def actuals(prefix: str, n: int) -> pa.Table:
    now = datetime(2026, 3, 14, tzinfo=UTC)
    return pa.Table.from_pylist(
        [
            {
                "prediction_id": f"{prefix}-{i}",
                "deployment": "churn",
                "actual": "1",
                "received_at": now + timedelta(seconds=n - i),
                "revision": 1,
                "model": "churn",
                "version": 3,
                "role": "champion",
                "predicted_at": now,
                "outcome": "ok",
                "output": "1",
                "probabilities": [0.4, 0.6],
            }
            for i in range(n)
        ],
        schema=ACTUAL_SCHEMA,
    )


def segment(
    root: Path, writer: str, when: datetime, table: pa.Table, kind: str = PREDICTIONS
) -> Path:
    return write_segment(root, kind, writer, table, now=when)


def rows(
    root: Path, kind: str = PREDICTIONS, deployment: str = "churn"
) -> list[tuple[object, ...]]:
    files = [str(path) for path in live_files(root, kind, deployment)]
    return (
        duckdb.connect()
        .execute(
            "SELECT * FROM read_parquet(?, hive_partitioning = false) WHERE deployment = ? "
            "ORDER BY 1",
            [files, deployment],
        )
        .fetchall()
    )


def names(root: Path, kind: str = PREDICTIONS) -> list[str]:
    return sorted(path.name for path in (root / kind).glob("*/*") if path.is_file())


def test_closed_hour_merges_into_one_file_with_the_same_rows(tmp_path: Path) -> None:
    for i in range(100):
        segment(tmp_path, "w0", at(10, i % 60), predictions(f"a{i:03d}", 5))
    current = segment(tmp_path, "w0", at(12, 1), predictions("now", 3))
    foreign = segment(tmp_path, "w1", at(10, 5), predictions("w1", 4))
    before = rows(tmp_path)
    assert len(before) == 507

    assert compact_writer(tmp_path, "w0", now=at(12, 2)) == 100

    assert rows(tmp_path) == before
    compacted = tmp_path / PREDICTIONS / "day=2026-03-14" / "w0-10.compact.parquet"
    assert live_files(tmp_path, PREDICTIONS, "churn") == sorted([compacted, current, foreign])
    assert names(tmp_path) == sorted([compacted.name, current.name, foreign.name])
    ts = pq.read_table(compacted).column("ts").to_pylist()
    assert ts == sorted(ts)
    assert compact_writer(tmp_path, "w0", now=at(12, 2)) == 0  # nothing left to do


def test_current_hour_waits_unless_closing(tmp_path: Path) -> None:
    segment(tmp_path, "w0", at(10, 59), predictions("a", 2))
    segment(tmp_path, "w0", at(11, 30), predictions("b", 2))
    assert compact_writer(tmp_path, "w0", now=at(11, 0, days=0) + timedelta(seconds=30)) == 0
    assert compact_writer(tmp_path, "w0", now=at(11, 45)) == 1
    assert compact_writer(tmp_path, "w0", now=at(11, 45), close=True) == 1
    assert names(tmp_path) == ["w0-10.compact.parquet", "w0-11.compact.parquet"]
    assert [row[0] for row in rows(tmp_path)] == ["a-0", "a-1", "b-0", "b-1"]


def test_new_segments_fold_into_an_existing_compact_file(tmp_path: Path) -> None:
    segment(tmp_path, "w0", at(10, 1), predictions("a", 3))
    compact_writer(tmp_path, "w0", now=at(10, 30), close=True)
    segment(tmp_path, "w0", at(10, 40), predictions("b", 2))  # the writer came back this hour
    assert compact_writer(tmp_path, "w0", now=at(12)) == 1
    assert names(tmp_path) == ["w0-10.compact.parquet"]
    assert [row[0] for row in rows(tmp_path)] == ["a-0", "a-1", "a-2", "b-0", "b-1"]


def test_segments_left_by_an_interrupted_compaction_are_not_merged_twice(
    tmp_path: Path,
) -> None:
    first = segment(tmp_path, "w0", at(10, 1), predictions("a", 3))
    second = segment(tmp_path, "w0", at(10, 2), predictions("b", 1))
    saved = {path: path.read_bytes() for path in (first, second)}
    compact_writer(tmp_path, "w0", now=at(12))
    target = first.with_name("w0-10.compact.parquet")
    token = pq.read_schema(target).metadata[compaction.TOKEN_KEY].decode()
    # as if the process died after renaming the merged file, before deleting its segments
    for path, content in saved.items():
        path.write_bytes(content)
    journal_path(target).write_text("\n".join([token, first.name, second.name]))
    late = segment(tmp_path, "w0", at(10, 59), predictions("c", 2))  # renamed in late

    assert compact_writer(tmp_path, "w0", now=at(12)) == 1
    assert names(tmp_path) == ["w0-10.compact.parquet"]
    assert not late.exists()
    assert not journal_path(target).exists()
    assert [row[0] for row in rows(tmp_path)] == ["a-0", "a-1", "a-2", "b-0", "c-0", "c-1"]


def test_a_journal_whose_file_never_landed_deletes_nothing_unmerged(tmp_path: Path) -> None:
    first = segment(tmp_path, "w0", at(10, 1), predictions("a", 3))
    target = first.with_name("w0-10.compact.parquet")
    journal_path(target).write_text("\n".join(["0123", first.name]))  # died before renaming
    assert compact_writer(tmp_path, "w0", now=at(12)) == 1
    assert [row[0] for row in rows(tmp_path)] == ["a-0", "a-1", "a-2"]


def test_actuals_are_compacted_too_and_row_groups_stay_large(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(compaction, "ROW_GROUP_ROWS", 1000)
    for i in range(5):
        segment(tmp_path, "w0", at(9, i), actuals(f"{i}", 450), kind=ACTUALS)
    assert compact_writer(tmp_path, "w0", now=at(11)) == 5
    compacted = tmp_path / ACTUALS / "day=2026-03-14" / "w0-09.compact.parquet"
    metadata = pq.ParquetFile(compacted).metadata
    groups = [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
    assert groups == [1000, 1000, 250]
    assert len(rows(tmp_path, ACTUALS)) == 2250
    table = pq.read_table(compacted)
    assert table.schema.remove_metadata() == ACTUAL_SCHEMA
    for start in range(0, 2250, 1000):
        received = table.column("received_at").to_pylist()[start : start + 1000]
        assert received == sorted(received)


def test_an_unreadable_segment_holds_back_its_hour_only(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good = segment(tmp_path, "w0", at(8, 1), predictions("a", 2))
    broken = good.with_name("w0-09-1_000001.parquet")
    broken.write_bytes(b"not parquet")
    with caplog.at_level(logging.WARNING, logger="turnout.monitoring"):
        assert compact_writer(tmp_path, "w0", now=at(12)) == 1
    assert names(tmp_path) == sorted(["w0-08.compact.parquet", broken.name])
    assert "compacting" in caplog.text
    assert not [path for path in broken.parent.iterdir() if path.name.startswith(".")]


def legacy_segment(root: Path, kind: str, deployment: str, when: datetime) -> Path:
    """A file where the earlier layout kept it: one folder per deployment."""
    table = predictions("p", 1, deployment=deployment) if kind == PREDICTIONS else actuals("a", 1)
    folder = root / kind / deployment / f"{when:%Y-%m-%d}"
    folder.mkdir(parents=True, exist_ok=True)
    return write_atomically(folder / f"w0-{when:%H}-1_000001.parquet", table)


def test_expire_deletes_old_days_of_every_kind_in_both_layouts(tmp_path: Path) -> None:
    for kind, table in ((PREDICTIONS, predictions("p", 1)), (ACTUALS, actuals("a", 1))):
        for days in (-40, -31, -30, -1, 0):
            write_segment(tmp_path, kind, "w0", table, now=at(10, days=days))
            legacy_segment(tmp_path, kind, "churn", at(10, days=days))
        for days in (-45, -35):  # a deployment whose every day expired
            legacy_segment(tmp_path, kind, "fraud", at(10, days=days))
    (tmp_path / PREDICTIONS / "churn" / "notes").mkdir()

    assert expire(tmp_path, 30, now=at(12)) == 12

    expected = ["2026-02-12", "2026-03-13", "2026-03-14"]
    for kind in (PREDICTIONS, ACTUALS):
        left = sorted(path.name for path in (tmp_path / kind).iterdir())
        assert left == ["churn", *(f"day={day}" for day in expected)]
        legacy = sorted(path.name for path in (tmp_path / kind / "churn").iterdir())
        assert legacy == expected + (["notes"] if kind == PREDICTIONS else [])
    assert len(rows(tmp_path)) == 6  # 3 days left in each layout
    assert expire(tmp_path, 30, now=at(12)) == 0
    assert expire(tmp_path / "missing", 30, now=at(12)) == 0


def test_two_writers_expiring_at_once_delete_each_folder_once(tmp_path: Path) -> None:
    table = predictions("p", 1)
    for days in range(40, 240):
        for writer in ("w0", "w1", "w2"):
            write_segment(tmp_path, PREDICTIONS, writer, table, now=at(0, days=-days))
    counts: list[int] = []
    start = threading.Barrier(2)

    def run() -> None:
        start.wait()
        counts.append(expire(tmp_path, 30, now=at(12)))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(counts) == 2  # neither raised
    assert sum(counts) <= 200
    assert list((tmp_path / PREDICTIONS).iterdir()) == []


@pytest.mark.parametrize("run_rows", [10_000, 128], ids=["in-memory", "runs-on-disk"])
def test_an_hour_of_many_deployments_merges_into_one_file_clustered_by_deployment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run_rows: int
) -> None:
    """Each flush holds every deployment; the compacted hour keeps every row, sorted by
    deployment then time, so each row group covers a narrow range of deployments. An hour
    larger than RUN_ROWS is sorted in runs on disk and merged a few rows at a time."""
    monkeypatch.setattr(compaction, "ROW_GROUP_ROWS", 100)
    monkeypatch.setattr(compaction, "RUN_ROWS", run_rows)
    monkeypatch.setattr(compaction, "_MIN_STEP_ROWS", 7)
    deployments = [f"d{d:02d}" for d in range(20)]
    for flush in range(30):
        tables = [
            predictions(f"{name}-{flush:02d}", 3, deployment=name, ts=1_773_482_400.0 + flush)
            for name in deployments
        ]
        segment(tmp_path, "w0", at(9, flush), pa.concat_tables(tables))
    before = {name: rows(tmp_path, deployment=name) for name in deployments}

    assert compact_writer(tmp_path, "w0", now=at(11)) == 30

    [compacted] = (tmp_path / PREDICTIONS).glob("*/*.parquet")
    assert compacted.name == "w0-09.compact.parquet"
    assert {name: rows(tmp_path, deployment=name) for name in deployments} == before
    table = pq.read_table(compacted)
    assert table.num_rows == 20 * 30 * 3
    assert table.schema.remove_metadata() == PREDICTION_SCHEMA
    keys = [
        (row["deployment"], row["ts"]) for row in table.select(["deployment", "ts"]).to_pylist()
    ]
    assert keys == sorted(keys)
    metadata = pq.ParquetFile(compacted).metadata
    column = metadata.schema.names.index("deployment")
    spans = []
    for group in range(metadata.num_row_groups):
        statistics = metadata.row_group(group).column(column).statistics
        spans.append((statistics.min, statistics.max))
    assert len(spans) == 18
    assert all(deployments.index(high) - deployments.index(low) <= 1 for low, high in spans)
    assert not [path for path in compacted.parent.iterdir() if path.name.startswith(".")]


def test_segments_left_in_the_earlier_layout_are_compacted_where_they_are(
    tmp_path: Path,
) -> None:
    first = legacy_segment(tmp_path, PREDICTIONS, "churn", at(9, 1))
    second = first.with_name("w0-09-2_000002.parquet")
    write_atomically(second, predictions("q", 2))
    segment(tmp_path, "w0", at(10, 1), predictions("new", 1))

    assert compact_writer(tmp_path, "w0", now=at(12)) == 3

    assert sorted(path.name for path in first.parent.iterdir()) == ["w0-09.compact.parquet"]
    assert names(tmp_path) == ["w0-10.compact.parquet"]
    assert [row[0] for row in rows(tmp_path)] == ["new-0", "p-0", "q-0", "q-1"]
