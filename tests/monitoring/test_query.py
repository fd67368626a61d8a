from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from turnout.errors import StoreUnavailable
from turnout.monitoring import query, segments
from turnout.monitoring.layout import (
    ACTUAL_SCHEMA,
    ACTUALS,
    PREDICTION_SCHEMA,
    PREDICTIONS,
)
from turnout.monitoring.query import ANSWER_SCHEMA, LogReader

DEPLOYMENT = "churn-prod"
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def answer(prediction_id: str, **fields: Any) -> dict[str, Any]:
    """One logged prediction row; unspecified fields take typical values."""
    row: dict[str, Any] = {
        "prediction_id": prediction_id,
        "deployment": DEPLOYMENT,
        "revision": 1,
        "model": "churn",
        "version": 3,
        "role": "champion",
        "ts": T0,
        "latency_ms": 2.0,
        "outcome": "ok",
        "inputs": None,
        "output": "1",
        "probabilities": [0.3, 0.7],
        "error": None,
    }
    row.update(fields)
    return row


def write(
    root: Path,
    rows: Sequence[dict[str, Any]],
    *,
    kind: str = PREDICTIONS,
    writer: str = "w1",
    now: datetime | None = None,
) -> Path:
    schema = PREDICTION_SCHEMA if kind == PREDICTIONS else ACTUAL_SCHEMA
    table = pa.Table.from_pylist(list(rows), schema=schema)
    stamp = now or (min(r["ts"] for r in rows) if kind == PREDICTIONS else T0)
    return segments.write_segment(root, kind, writer, table, now=stamp)


def graded_row(prediction_id: str, actual: str, received_at: datetime, **fields: Any) -> dict:
    row = {
        "prediction_id": prediction_id,
        "deployment": DEPLOYMENT,
        "actual": actual,
        "received_at": received_at,
        "revision": 1,
        "model": "churn",
        "version": 3,
        "role": "champion",
        "predicted_at": T0,
        "outcome": "ok",
        "output": "1",
        "probabilities": None,
    }
    row.update(fields)
    return row


GROUPS = [(3, "champion"), (4, "challenger"), (5, "shadow"), (3, "fallback"), (2, "failover")]


def random_log(seed: int, count: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(count):
        version, role = GROUPS[rng.integers(len(GROUPS))]
        outcome = "fallback" if role == "fallback" else rng.choice(["ok", "ok", "error", "timeout"])
        rows.append(
            answer(
                f"id{i:05d}",
                version=version,
                role=role,
                outcome=str(outcome),
                latency_ms=float(np.float32(rng.lognormal(1.0, 0.8))),
                ts=T0 + timedelta(milliseconds=int(rng.integers(0, 3_600_000))),
            )
        )
    return rows


def summarise(reader: LogReader, deployment: str, **window: Any) -> list[dict[str, Any]]:
    """The summary's groups as the metrics API shows them (without the performance report)."""
    return [group.to_dict(performance=False) for group in reader.summary(deployment, **window)]


@pytest.fixture
def reader(tmp_path: Path) -> LogReader:
    return LogReader(tmp_path)


def test_summary_matches_numpy_on_the_same_rows(tmp_path: Path, reader: LogReader) -> None:
    rows = random_log(1, 3000)
    for start in range(0, 3000, 1000):
        write(tmp_path, rows[start : start + 1000], writer=f"w{start // 1000}")

    summary = summarise(reader, DEPLOYMENT)

    assert [(g["version"], g["role"]) for g in summary] == sorted(set(GROUPS))
    for group in summary:
        mine = [r for r in rows if (r["version"], r["role"]) == (group["version"], group["role"])]
        latency = np.array([r["latency_ms"] for r in mine], dtype=np.float32).astype(np.float64)
        outcomes = [r["outcome"] for r in mine]
        n = len(mine)
        assert group["deployment"] == DEPLOYMENT
        assert group["requests"] == n
        assert group["ok"] == outcomes.count("ok")
        assert group["errors"] == outcomes.count("error")
        assert group["timeouts"] == outcomes.count("timeout")
        assert group["fallbacks"] == outcomes.count("fallback")
        assert group["error_rate"] == pytest.approx(outcomes.count("error") / n)
        assert group["timeout_rate"] == pytest.approx(outcomes.count("timeout") / n)
        assert group["fallback_rate"] == pytest.approx(outcomes.count("fallback") / n)
        for q in (50, 95, 99):
            expected = np.percentile(latency, q, method="linear")
            assert group[f"latency_p{q}_ms"] == pytest.approx(expected, rel=1e-12)
        assert group["first_ts"] == min(r["ts"] for r in mine).isoformat()
        assert group["last_ts"] == max(r["ts"] for r in mine).isoformat()
        assert (group["actuals"], group["correct"], group["accuracy"]) == (0, 0, None)


def test_summary_counts_rows_in_the_half_open_window(tmp_path: Path, reader: LogReader) -> None:
    times = [T0 + timedelta(minutes=m) for m in range(10)]
    write(tmp_path, [answer(f"id{i}", ts=t, latency_ms=float(i)) for i, t in enumerate(times)])

    [group] = summarise(reader, DEPLOYMENT, since=times[2], until=times[5])

    assert group["requests"] == 3
    assert group["first_ts"] == times[2].isoformat()
    assert group["last_ts"] == times[4].isoformat()
    assert group["latency_p50_ms"] == 3.0
    assert summarise(reader, DEPLOYMENT, since=times[9] + timedelta(microseconds=1)) == []


def test_summary_window_spans_days(tmp_path: Path, reader: LogReader) -> None:
    days = [T0 + timedelta(days=d) for d in range(5)]
    for d, day in enumerate(days):
        write(tmp_path, [answer(f"id{d}", ts=day)], writer="w1")

    [group] = summarise(reader, DEPLOYMENT, since=days[1], until=days[3])

    assert group["requests"] == 2
    naive = summarise(reader, DEPLOYMENT, since=days[1].replace(tzinfo=None))
    assert naive[0]["requests"] == 4


def test_a_compacted_file_replaces_its_segments(tmp_path: Path, reader: LogReader) -> None:
    rows = [answer(f"id{i}", latency_ms=float(i)) for i in range(6)]
    first = write(tmp_path, rows[:3])
    write(tmp_path, rows[3:])
    compact = first.with_name(f"w1-{T0:%H}{segments.COMPACT_SUFFIX}")
    segments.write_atomically(compact, pa.Table.from_pylist(rows, schema=PREDICTION_SCHEMA))
    write(tmp_path, [answer("other")], writer="w2")

    [group] = summarise(reader, DEPLOYMENT)

    assert group["requests"] == 7
    found = reader.lookup(DEPLOYMENT, ["id0", "id5"]).column("prediction_id").to_pylist()
    assert sorted(found) == ["id0", "id5"]


def test_a_file_compacted_away_during_a_query_is_listed_again(
    tmp_path: Path, reader: LogReader, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, [answer("id0")])
    listed = segments.live_files
    calls = []

    def stale_once(*args: Any, **kwargs: Any) -> list[Path]:
        calls.append(1)
        files = listed(*args, **kwargs)
        return [*files, tmp_path / "gone.parquet"] if len(calls) == 1 else files

    monkeypatch.setattr(segments, "live_files", stale_once)

    [group] = summarise(reader, DEPLOYMENT)

    assert group["requests"] == 1
    assert len(calls) == 3  # predictions twice (the first listing was stale), actuals once


def test_a_file_that_stays_missing_is_reported(
    tmp_path: Path, reader: LogReader, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, [answer("id0")])
    listed = segments.live_files

    def stale(*args: Any, **kwargs: Any) -> list[Path]:
        return [*listed(*args, **kwargs), tmp_path / "gone.parquet"]

    monkeypatch.setattr(segments, "live_files", stale)

    with pytest.raises(StoreUnavailable, match="cannot read the predictions log of churn-prod"):
        summarise(reader, DEPLOYMENT)


def test_one_reader_serves_many_threads(tmp_path: Path, reader: LogReader) -> None:
    rows = random_log(4, 500)
    write(tmp_path, rows)
    expected = summarise(reader, DEPLOYMENT)
    ids = [r["prediction_id"] for r in rows[:50]]

    def work(_: int) -> tuple[list[dict[str, Any]], int]:
        return summarise(reader, DEPLOYMENT), reader.lookup(DEPLOYMENT, ids).num_rows

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(work, range(32)))

    assert all(result == (expected, 50) for result in results)


def test_an_empty_log_gives_empty_results(reader: LogReader) -> None:
    assert summarise(reader, DEPLOYMENT) == []
    assert reader.lookup(DEPLOYMENT, ["id0"]).schema == ANSWER_SCHEMA
    assert reader.lookup(DEPLOYMENT, ["id0"]).num_rows == 0
    assert reader.payloads(DEPLOYMENT, 3) == ([], [])
    assert reader.graded(DEPLOYMENT).schema == ACTUAL_SCHEMA
    assert reader.graded(DEPLOYMENT).num_rows == 0
    assert reader.graded_ids(DEPLOYMENT, ["id0"]) == set()


def test_lookup_returns_every_answer_to_the_ids(tmp_path: Path, reader: LogReader) -> None:
    write(
        tmp_path,
        [
            answer("a", outcome="error", output=None, probabilities=None),
            answer("a", role="failover", version=2, ts=T0 + timedelta(milliseconds=5)),
            answer("a", role="shadow", version=5, ts=T0 + timedelta(milliseconds=9)),
            answer("b", output="0"),
            answer("c"),
        ],
    )

    found = reader.lookup(DEPLOYMENT, ["a", "b", "b", "zzz", "it's; DROP TABLE x"])

    assert found.schema == ANSWER_SCHEMA
    assert found.column_names == list(query.ANSWER_COLUMNS)
    assert found.select(["prediction_id", "role", "outcome", "output"]).to_pylist() == [
        {"prediction_id": "a", "role": "champion", "outcome": "error", "output": None},
        {"prediction_id": "b", "role": "champion", "outcome": "ok", "output": "0"},
        {"prediction_id": "a", "role": "failover", "outcome": "ok", "output": "1"},
        {"prediction_id": "a", "role": "shadow", "outcome": "ok", "output": "1"},
    ]
    assert reader.lookup(DEPLOYMENT, []).num_rows == 0


def test_payloads_are_the_latest_answers_a_model_gave(tmp_path: Path, reader: LogReader) -> None:
    def logged(i: int, **fields: Any) -> dict[str, Any]:
        values = {"ts": T0 + timedelta(seconds=i), "inputs": f"[{i}]", "output": f"{i % 2}"}
        return answer(f"id{i}", **{**values, **fields})

    write(
        tmp_path,
        [
            logged(0),
            logged(1, role="shadow"),
            logged(2),
            logged(3, role="fallback", outcome="fallback"),
            logged(4, outcome="error"),
            logged(5, version=4, role="challenger"),
            logged(6, inputs=None),
            logged(7),
        ],
    )

    assert reader.payloads(DEPLOYMENT, 3) == (["[7]", "[2]", "[1]", "[0]"], ["1", "0", "1", "0"])
    assert reader.payloads(DEPLOYMENT, 3, limit=2) == (["[7]", "[2]"], ["1", "0"])
    until = T0 + timedelta(seconds=2)
    assert reader.payloads(DEPLOYMENT, 3, until=until) == (["[1]", "[0]"], ["1", "0"])
    assert reader.payloads(DEPLOYMENT, 4) == (["[5]"], ["1"])


def test_graded_keeps_the_latest_actual_per_answer(tmp_path: Path, reader: LogReader) -> None:
    later = T0 + timedelta(hours=1)
    write(
        tmp_path,
        [
            graded_row("a", "0", T0),
            graded_row("a", "0", T0, role="shadow", version=5),
            graded_row("b", "1", T0),
        ],
        kind=ACTUALS,
    )
    write(tmp_path, [graded_row("a", "1", later)], kind=ACTUALS, now=later)

    graded = reader.graded(DEPLOYMENT)

    assert graded.schema == ACTUAL_SCHEMA
    rows = graded.select(["prediction_id", "role", "actual"]).to_pylist()
    assert sorted(rows, key=lambda r: (r["prediction_id"], r["role"])) == [
        {"prediction_id": "a", "role": "champion", "actual": "1"},
        {"prediction_id": "a", "role": "shadow", "actual": "0"},
        {"prediction_id": "b", "role": "champion", "actual": "1"},
    ]
    assert reader.graded(DEPLOYMENT, until=later).num_rows == 3  # the old actual, in its window
    assert reader.graded(DEPLOYMENT, since=later).num_rows == 1
    assert reader.graded_ids(DEPLOYMENT, ["a", "c"]) == {"a"}


def test_summary_accuracy_counts_only_answers_with_an_output(
    tmp_path: Path, reader: LogReader
) -> None:
    write(tmp_path, [answer("a"), answer("b"), answer("c")])
    write(
        tmp_path,
        [
            graded_row("a", "1", T0),
            graded_row("b", "1", T0, output="0"),
            graded_row("c", "1", T0, outcome="error", output=None),
        ],
        kind=ACTUALS,
    )

    [group] = summarise(reader, DEPLOYMENT)

    assert (group["actuals"], group["correct"], group["accuracy"]) == (3, 1, 0.5)


def test_summary_shows_groups_graded_but_idle_in_the_window(
    tmp_path: Path, reader: LogReader
) -> None:
    later = T0 + timedelta(days=1)
    write(tmp_path, [answer("a")])
    write(tmp_path, [graded_row("a", "1", later)], kind=ACTUALS, now=later)

    [group] = summarise(reader, DEPLOYMENT, since=later)

    assert group["requests"] == 0
    assert group["error_rate"] is None
    assert group["latency_p50_ms"] is None
    assert (group["actuals"], group["accuracy"]) == (1, 1.0)


def legacy_write(root: Path, kind: str, deployment: str, rows: Sequence[dict[str, Any]]) -> Path:
    """A file where the earlier layout kept it: one folder per deployment."""
    schema = PREDICTION_SCHEMA if kind == PREDICTIONS else ACTUAL_SCHEMA
    folder = root / kind / deployment / f"{T0:%Y-%m-%d}"
    folder.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(list(rows), schema=schema)
    return segments.write_atomically(folder / f"old-{T0:%H}-1_000001.parquet", table)


def test_a_query_for_one_deployment_reads_only_its_rows_from_shared_files(
    tmp_path: Path, reader: LogReader
) -> None:
    rows = [
        answer(f"d{d:02d}-{i}", deployment=f"d{d:02d}", latency_ms=float(d * 10 + i),
               ts=T0 + timedelta(seconds=i), version=1 + i % 2)
        for d in range(50)
        for i in range(6)
    ]  # fmt: skip
    write(tmp_path, rows[0::2], writer="w1")  # two writers, each with half of every deployment
    write(tmp_path, rows[1::2], writer="w2")

    mine = [r for r in rows if r["deployment"] == "d07"]
    summary = summarise(reader, "d07")
    assert [(g["version"], g["requests"]) for g in summary] == [(1, 3), (2, 3)]
    assert all(g["deployment"] == "d07" for g in summary)
    found = reader.lookup("d07", [r["prediction_id"] for r in rows])
    expected = pa.Table.from_pylist(mine, schema=PREDICTION_SCHEMA).select(query.ANSWER_COLUMNS)
    assert found.to_pylist() == expected.cast(ANSWER_SCHEMA).to_pylist()
    assert reader.lookup("d08", ["d07-0"]).num_rows == 0
    assert summarise(reader, "nobody") == []


def test_files_of_the_earlier_per_deployment_layout_are_still_read(
    tmp_path: Path, reader: LogReader
) -> None:
    legacy_write(tmp_path, PREDICTIONS, DEPLOYMENT, [answer("old0"), answer("old1")])
    legacy_write(tmp_path, PREDICTIONS, "fraud", [answer("x", deployment="fraud")])
    legacy_write(tmp_path, ACTUALS, DEPLOYMENT, [graded_row("old0", "1", T0)])
    write(tmp_path, [answer("new0", ts=T0 + timedelta(minutes=5))])

    [group] = summarise(reader, DEPLOYMENT)

    assert (group["requests"], group["actuals"], group["correct"]) == (3, 1, 1)
    found = reader.lookup(DEPLOYMENT, ["old0", "old1", "new0", "x"])
    assert sorted(found.column("prediction_id").to_pylist()) == ["new0", "old0", "old1"]
    assert reader.graded_ids(DEPLOYMENT, ["old0", "new0"]) == {"old0"}
    assert [g["requests"] for g in summarise(reader, "fraud")] == [1]
