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
from turnout.monitoring.layout import ACTUAL_SCHEMA, ACTUALS, PREDICTIONS
from turnout.monitoring.predlog import LogEntry, prediction_table
from turnout.monitoring.segments import live_files, write_segment
from turnout.registry.flavors import Prediction

DAY = datetime(2026, 3, 14, tzinfo=UTC)


def at(hour: int, minute: int = 0, *, days: int = 0) -> datetime:
    return DAY + timedelta(days=days, hours=hour, minutes=minute)


def predictions(prefix: str, n: int, *, ts: float = 1_773_450_000.0) -> pa.Table:
    entries = [
        LogEntry(
            deployment="churn",
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
    return prediction_table("churn", entries)


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
    return write_segment(root, kind, "churn", writer, table, now=when)


def rows(root: Path, kind: str = PREDICTIONS) -> list[tuple[object, ...]]:
    files = [str(path) for path in live_files(root, kind, "churn")]
    return duckdb.connect().execute("SELECT * FROM read_parquet(?) ORDER BY 1", [files]).fetchall()


def names(root: Path, kind: str = PREDICTIONS) -> list[str]:
    return sorted(path.name for path in (root / kind / "churn").glob("*/*") if path.is_file())


def test_closed_hour_merges_into_one_file_with_the_same_rows(tmp_path: Path) -> None:
    for i in range(100):
        segment(tmp_path, "w0", at(10, i % 60), predictions(f"a{i:03d}", 5))
    current = segment(tmp_path, "w0", at(12, 1), predictions("now", 3))
    foreign = segment(tmp_path, "w1", at(10, 5), predictions("w1", 4))
    before = rows(tmp_path)
    assert len(before) == 507

    assert compact_writer(tmp_path, "w0", now=at(12, 2)) == 100

    assert rows(tmp_path) == before
    compacted = tmp_path / PREDICTIONS / "churn" / "2026-03-14" / "w0-10.compact.parquet"
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
    compacted = tmp_path / ACTUALS / "churn" / "2026-03-14" / "w0-09.compact.parquet"
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


def test_expire_deletes_old_days_of_every_deployment_and_kind(tmp_path: Path) -> None:
    for kind, table in ((PREDICTIONS, predictions("p", 1)), (ACTUALS, actuals("a", 1))):
        for deployment in ("churn", "fraud"):
            for days in (-40, -31, -30, -1, 0):
                write_segment(tmp_path, kind, deployment, "w0", table, now=at(10, days=days))
    (tmp_path / PREDICTIONS / "churn" / "notes").mkdir()
    assert expire(tmp_path, 30, now=at(12)) == 8
    for kind in (PREDICTIONS, ACTUALS):
        for deployment in ("churn", "fraud"):
            left = sorted(path.name for path in (tmp_path / kind / deployment).iterdir())
            expected = ["2026-02-12", "2026-03-13", "2026-03-14"]
            if (kind, deployment) == (PREDICTIONS, "churn"):
                expected.append("notes")
            assert left == expected
    assert expire(tmp_path, 30, now=at(12)) == 0
    assert expire(tmp_path / "missing", 30, now=at(12)) == 0


def test_two_writers_expiring_at_once_delete_each_folder_once(tmp_path: Path) -> None:
    table = predictions("p", 1)
    for days in range(40, 240):
        for writer in ("w0", "w1", "w2"):
            write_segment(tmp_path, PREDICTIONS, "churn", writer, table, now=at(0, days=-days))
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
    assert list((tmp_path / PREDICTIONS / "churn").iterdir()) == []
