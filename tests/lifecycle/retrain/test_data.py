"""The training data loader: files, folders, globs, S3, SQL and the deployment's logged
traffic, with the reference in front, the newest `max_rows` kept and a stable fingerprint."""

from __future__ import annotations

import hashlib
import io
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import orjson
import pandas as pd
import pyarrow as pa
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber
from sqlalchemy import create_engine

from turnout.errors import BadRequest
from turnout.lifecycle.retrain import data
from turnout.lifecycle.retrain.data import TrainingData, load_training_data
from turnout.lifecycle.retrain.policy import DataSource
from turnout.lifecycle.sources import DataAccess
from turnout.monitoring.layout import SCHEMAS
from turnout.monitoring.query import LogReader
from turnout.monitoring.segments import write_segment
from turnout.registry.baseline import fingerprint

COLUMNS = ["x", "c"]
TARGET = "y"


def table(n: int, start: int = 0) -> pd.DataFrame:
    """`n` rows: a float, a string, an unused column and a 0/1 target."""
    i = range(start, start + n)
    return pd.DataFrame(
        {
            "unused": [k * 10 for k in i],
            "x": [k + 0.25 for k in i],
            "c": [f"s{k}" for k in i],
            "y": [k % 2 for k in i],
        }
    )


def load(tmp_path: Path, **source: Any) -> TrainingData:
    return load_training_data(
        DataSource(**source),
        columns=COLUMNS,
        target=TARGET,
        deployment="d",
        log=LogReader(tmp_path),
        access=DataAccess.unlimited(),
    )


def expected(*frames: pd.DataFrame) -> pd.DataFrame:
    return pd.concat(frames, ignore_index=True)[[*COLUMNS, TARGET]]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- files ------------------------------------------------------------------------------------


@pytest.fixture
def monthly(tmp_path: Path) -> Path:
    """data/2026-01.csv, data/2026-02.csv, data/2026-03/part-0.parquet, and files a folder
    must skip (notes, a Spark marker, a hidden copy, a temporary folder)."""
    folder = tmp_path / "data"
    (folder / "2026-03" / "_temporary").mkdir(parents=True)
    table(3, 0).to_csv(folder / "2026-02.csv", index=False)  # written out of order on purpose
    table(2, 100).to_csv(folder / "2026-01.csv", index=False)
    table(2, 200).to_parquet(folder / "2026-03" / "part-0.parquet", index=False)
    table(5, 900).to_csv(folder / ".2026-02.csv", index=False)
    table(5, 900).to_csv(folder / "2026-03" / "_temporary" / "part-1.csv", index=False)
    (folder / "_SUCCESS").write_text("")
    (folder / "notes.txt").write_text("x,c,y\n1,2,3\n")
    return folder


def test_a_folder_reads_its_table_files_in_sorted_path_order(monthly: Path) -> None:
    got = load(monthly.parent, path=str(monthly))
    frames = [
        pd.read_csv(monthly / "2026-01.csv"),
        pd.read_csv(monthly / "2026-02.csv"),
        pd.read_parquet(monthly / "2026-03" / "part-0.parquet"),
    ]
    pd.testing.assert_frame_equal(got.frame, expected(*frames))
    assert got.fingerprint == fingerprint(expected(*frames))
    assert got.rows == 7
    [entry] = got.sources
    assert entry["kind"] == "path"
    assert entry["files"] == [
        {
            "name": str(monthly / "2026-01.csv"),
            "sha256": sha256(monthly / "2026-01.csv"),
            "rows": 2,
        },
        {
            "name": str(monthly / "2026-02.csv"),
            "sha256": sha256(monthly / "2026-02.csv"),
            "rows": 3,
        },
        {
            "name": str(monthly / "2026-03" / "part-0.parquet"),
            "sha256": sha256(monthly / "2026-03" / "part-0.parquet"),
            "rows": 2,
        },
    ]
    assert (entry["rows"], entry["without_target"], entry["used"]) == (7, 0, 7)


def test_a_file_and_a_glob_give_the_rows_pandas_reads(monthly: Path) -> None:
    one = load(monthly.parent, path=str(monthly / "2026-02.csv"))
    frame = expected(pd.read_csv(monthly / "2026-02.csv"))
    pd.testing.assert_frame_equal(one.frame, frame)
    assert one.fingerprint == fingerprint(frame)

    matched = load(monthly.parent, path=str(monthly / "2026-0*.csv"))
    frame = expected(pd.read_csv(monthly / "2026-01.csv"), pd.read_csv(monthly / "2026-02.csv"))
    pd.testing.assert_frame_equal(matched.frame, frame)
    assert matched.fingerprint == fingerprint(frame)
    assert [f["name"] for f in matched.sources[0]["files"]] == [
        str(monthly / "2026-01.csv"),
        str(monthly / "2026-02.csv"),
    ]


def test_csv_and_parquet_of_the_same_table_have_one_fingerprint(tmp_path: Path) -> None:
    table(6).to_csv(tmp_path / "t.csv", index=False)
    table(6).to_parquet(tmp_path / "t.parquet", index=False)
    as_csv = load(tmp_path, path=str(tmp_path / "t.csv"))
    as_parquet = load(tmp_path, path=str(tmp_path / "t.parquet"))
    assert as_csv.fingerprint == as_parquet.fingerprint
    pd.testing.assert_frame_equal(as_csv.frame, as_parquet.frame)


def test_a_fingerprint_changes_when_one_value_changes(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    frame = table(6)
    frame.to_csv(path, index=False)
    first = load(tmp_path, path=str(path))
    assert load(tmp_path, path=str(path)).fingerprint == first.fingerprint
    frame.loc[3, "x"] = 3.5
    frame.to_csv(path, index=False)
    assert load(tmp_path, path=str(path)).fingerprint != first.fingerprint
    changed = load(tmp_path, path=str(path)).fingerprint
    frame.loc[3, "unused"] = -1  # a column the model does not use changes nothing
    frame.to_csv(path, index=False)
    assert load(tmp_path, path=str(path)).fingerprint == changed


def test_reference_rows_come_first_and_max_rows_keeps_the_newest(tmp_path: Path) -> None:
    table(3, 0).to_csv(tmp_path / "seed.csv", index=False)
    table(4, 50).to_parquet(tmp_path / "new.parquet", index=False)
    both = load(tmp_path, path=str(tmp_path / "new.parquet"), reference=str(tmp_path / "seed.csv"))
    assert both.frame["x"].tolist() == [0.25, 1.25, 2.25, 50.25, 51.25, 52.25, 53.25]
    assert [s["kind"] for s in both.sources] == ["reference", "path"]

    newest = load(
        tmp_path,
        path=str(tmp_path / "new.parquet"),
        reference=str(tmp_path / "seed.csv"),
        max_rows=5,
    )
    assert newest.frame["x"].tolist() == [1.25, 2.25, 50.25, 51.25, 52.25, 53.25][-5:]
    assert newest.frame.index.tolist() == [0, 1, 2, 3, 4]
    assert [(s["rows"], s["used"]) for s in newest.sources] == [(3, 1), (4, 4)]
    assert newest.fingerprint == fingerprint(newest.frame)

    only_new = load(
        tmp_path,
        path=str(tmp_path / "new.parquet"),
        reference=str(tmp_path / "seed.csv"),
        max_rows=2,
    )
    assert only_new.frame["x"].tolist() == [52.25, 53.25]
    assert [s["used"] for s in only_new.sources] == [0, 2]


def test_rows_without_a_target_are_dropped_and_counted(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("x,c,y\n1.5,a,1\n2.5,b,\n3.5,c,0\n")
    got = load(tmp_path, path=str(tmp_path / "t.csv"))
    assert got.frame["x"].tolist() == [1.5, 3.5]
    assert got.frame.index.tolist() == [0, 1]
    assert (got.sources[0]["rows"], got.sources[0]["without_target"]) == (3, 1)


def test_missing_columns_are_named_with_the_file_and_the_columns_it_has(monthly: Path) -> None:
    table(2).drop(columns=["c"]).to_csv(monthly / "2026-04.csv", index=False)
    with pytest.raises(
        BadRequest, match=r"2026-04\.csv lacks the columns c \(it has: unused, x, y\)"
    ):
        load(monthly.parent, path=str(monthly))
    (monthly.parent / "seed.csv").write_text("x,c\n1,a\n")
    with pytest.raises(BadRequest, match=r"seed\.csv lacks the columns y \(it has: x, c\)"):
        load(
            monthly.parent,
            path=str(monthly / "2026-01.csv"),
            reference=str(monthly.parent / "seed.csv"),
        )


def test_nothing_to_read_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(BadRequest, match=r"training data .*/nowhere does not exist"):
        load(tmp_path, path=str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadRequest, match=r"no \.csv or \.parquet files in .*/empty"):
        load(tmp_path, path=str(tmp_path / "empty"))
    with pytest.raises(BadRequest, match=r"no \.csv or \.parquet files in .*/empty/2030-\*"):
        load(tmp_path, path=str(tmp_path / "empty" / "2030-*.parquet"))
    (tmp_path / "t.json").write_text("{}")
    with pytest.raises(BadRequest, match=r"must be \.csv or \.parquet, got t\.json"):
        load(tmp_path, path=str(tmp_path / "t.json"))
    (tmp_path / "broken.parquet").write_text("not parquet")
    with pytest.raises(BadRequest, match=r"cannot read broken\.parquet"):
        load(tmp_path, path=str(tmp_path / "broken.parquet"))


def test_the_target_cannot_also_be_an_input(tmp_path: Path) -> None:
    table(2).to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(BadRequest, match="target 'x' is also one of the model's input"):
        load_training_data(
            DataSource(path=str(tmp_path / "t.csv")),
            columns=COLUMNS,
            target="x",
            deployment="d",
            log=LogReader(tmp_path),
            access=DataAccess.unlimited(),
        )


# -- S3 (a real boto3 client whose calls botocore's Stubber answers) --------------------------


def stubbed_s3(monkeypatch: pytest.MonkeyPatch, objects: dict[str, bytes], prefix: str) -> Stubber:
    client = boto3.client(
        "s3", region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test"
    )
    stubber = Stubber(client)
    listing = [{"Key": key, "Size": len(body)} for key, body in sorted(objects.items())]
    stubber.add_response(
        "list_objects_v2",
        {"Contents": listing, "IsTruncated": False},
        {"Bucket": "bucket", "Prefix": prefix},
    )
    monkeypatch.setattr(data, "s3_client", lambda: client)
    stubber.activate()
    return stubber


def csv_bytes(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()


def test_an_s3_prefix_is_listed_and_read_in_key_order(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    objects = {
        "data/2026-02.csv": csv_bytes(table(2, 10)),
        "data/2026-01.csv": csv_bytes(table(2, 0)),
        "data/_SUCCESS": b"",
        "data-old/2025-12.csv": csv_bytes(table(2, 900)),  # shares the prefix, not the folder
    }
    stubber = stubbed_s3(monkeypatch, objects, prefix="data")
    for key in ("data/2026-01.csv", "data/2026-02.csv"):
        body = StreamingBody(io.BytesIO(objects[key]), len(objects[key]))
        stubber.add_response("get_object", {"Body": body}, {"Bucket": "bucket", "Key": key})
    got = load(tmp_path, path="s3://bucket/data")
    stubber.assert_no_pending_responses()
    assert got.frame["x"].tolist() == [0.25, 1.25, 10.25, 11.25]
    assert got.sources[0]["files"] == [
        {
            "name": f"s3://bucket/{key}",
            "sha256": hashlib.sha256(objects[key]).hexdigest(),
            "rows": 2,
        }
        for key in ("data/2026-01.csv", "data/2026-02.csv")
    ]
    assert got.fingerprint == fingerprint(expected(table(2, 0), table(2, 10)))


def test_an_s3_glob_and_an_empty_match(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    objects = {"d/2026-01.csv": csv_bytes(table(1)), "d/2026-01/deep.csv": csv_bytes(table(1))}
    stubber = stubbed_s3(monkeypatch, objects, prefix="d/2026-")
    body = StreamingBody(io.BytesIO(objects["d/2026-01.csv"]), len(objects["d/2026-01.csv"]))
    stubber.add_response("get_object", {"Body": body}, {"Bucket": "bucket", "Key": "d/2026-01.csv"})
    assert load(tmp_path, path="s3://bucket/d/2026-*.csv").rows == 1  # `*` stops at a `/`

    stubbed_s3(monkeypatch, {}, prefix="d/2030-")
    with pytest.raises(BadRequest, match=r"no \.csv or \.parquet objects in s3://bucket/d/2030-\*"):
        load(tmp_path, path="s3://bucket/d/2030-*.csv")


def test_s3_errors_and_a_missing_boto3_are_bad_requests(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    client = boto3.client(
        "s3", region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test"
    )
    stubber = Stubber(client)
    stubber.add_client_error("list_objects_v2", "NoSuchBucket", "The bucket does not exist")
    stubber.activate()
    monkeypatch.setattr(data, "s3_client", lambda: client)
    with pytest.raises(BadRequest, match=r"cannot read s3://nope/x: .*NoSuchBucket"):
        load(tmp_path, path="s3://nope/x")
    monkeypatch.undo()

    monkeypatch.setitem(sys.modules, "boto3", None)  # as if it were not installed
    with pytest.raises(BadRequest, match=r"needs boto3: pip install 'turnout\[s3\]'"):
        load(tmp_path, path="s3://bucket/data")


# -- SQL --------------------------------------------------------------------------------------


@pytest.fixture
def database(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'training.db'}"
    engine = create_engine(url)
    table(5).to_sql("rows", engine, index=False)
    engine.dispose()
    return url


def test_the_sql_source_reads_the_query_result(database: str, tmp_path: Path) -> None:
    query = "SELECT * FROM rows WHERE x > 1 ORDER BY x"
    got = load(tmp_path, sql=query, url=database)
    assert got.frame["x"].tolist() == [1.25, 2.25, 3.25, 4.25]
    assert list(got.frame.columns) == [*COLUMNS, TARGET]
    [entry] = got.sources
    assert entry["kind"] == "sql"
    assert entry["url"] == database
    assert entry["query_sha256"] == hashlib.sha256(query.encode()).hexdigest()
    assert entry["rows"] == 4
    same = expected(table(5).iloc[1:])
    assert got.fingerprint == fingerprint(same.reset_index(drop=True))


def test_sql_errors_are_bad_requests_without_the_password(database: str, tmp_path: Path) -> None:
    with pytest.raises(BadRequest, match="failed: no such table: nope") as bad_query:
        load(tmp_path, sql="SELECT * FROM nope", url=database)
    assert "Traceback" not in bad_query.value.message
    with pytest.raises(BadRequest, match=r"lacks the columns c \(it has: x, y\)"):
        load(tmp_path, sql="SELECT x, y FROM rows", url=database)

    secret = "s3cr3t-pw"
    for url, problem in [
        (f"postgresql+psycopg://alice:{secret}@127.0.0.1:1/db", "failed: connection"),
        (f"sqlite://alice:{secret}@/{tmp_path}/x.db", "cannot use database"),
        (f"nosuchdb://alice:{secret}@host/db", "cannot use database"),
        (f"postgresql://alice:{secret}@host:port/db", "not a database URL"),
    ]:
        with pytest.raises(BadRequest, match=problem) as caught:
            load(tmp_path, sql="SELECT 1", url=url)
        assert secret not in caught.value.message
        assert "alice:***@" in caught.value.message or "not a database URL" in caught.value.message


# -- the deployment's logged traffic ---------------------------------------------------------

NOW = datetime.now(UTC)


def answer(
    pid: str,
    ago: timedelta,
    inputs: Any,
    *,
    role: str = "champion",
    version: int = 1,
    outcome: str = "ok",
) -> dict[str, Any]:
    text = None if inputs is None else orjson.dumps(inputs).decode()
    return {
        "prediction_id": pid,
        "deployment": "d",
        "revision": 1,
        "model": "m",
        "version": version,
        "role": role,
        "ts": NOW - ago,
        "latency_ms": 1.0,
        "outcome": outcome,
        "inputs": text,
        "output": "0" if outcome == "ok" else None,
        "probabilities": None,
        "error": None,
    }


def graded(logged: dict[str, Any], actual: Any, ago: timedelta) -> dict[str, Any]:
    return {
        "prediction_id": logged["prediction_id"],
        "deployment": "d",
        "actual": orjson.dumps(actual).decode(),
        "received_at": NOW - ago,
        "predicted_at": logged["ts"],
        "probabilities": None,
        **{k: logged[k] for k in ("revision", "model", "version", "role", "outcome", "output")},
    }


def write(root: Path, kind: str, rows: list[dict[str, Any]], ago: timedelta) -> None:
    table = pa.Table.from_pylist(rows, schema=SCHEMAS[kind])
    write_segment(root, kind, "test", table, now=NOW - ago)


@pytest.fixture
def traffic(tmp_path: Path) -> Path:
    """Ids sort against time on purpose (`e` is the oldest prediction); actuals arrive in
    another order than the predictions were made."""
    hours = [timedelta(hours=h) for h in range(8)]
    e = answer("e", hours[5], [1.5, "a"])
    d = answer("d", hours[4], [2.5, "b"])
    d_shadow = answer("d", hours[4], [2.5, "b"], role="shadow", version=2)
    c_failed = answer("c", hours[3], [3.5, "c"], outcome="timeout")
    c_failover = answer("c", hours[3], [3.5, "c"], role="failover", version=3)
    b = answer("b", hours[2], {"c": "d", "x": 4.5}, role="challenger", version=2)
    a_unlogged = answer("a", hours[1], None)
    old = answer("z", timedelta(days=3), [9.5, "z"])
    pending = answer("p", timedelta(minutes=5), [7.5, "p"])  # no actual yet
    write(tmp_path, "predictions", [old], timedelta(days=3))
    write(
        tmp_path,
        "predictions",
        [e, d, d_shadow, c_failed, c_failover, b, a_unlogged, pending],
        hours[0],
    )
    write(
        tmp_path,
        "actuals",
        [
            graded(b, 0, hours[1]),
            graded(e, 1, hours[1]),
            graded(d, 0, hours[0]),
            graded(d_shadow, 0, hours[0]),
            graded(c_failed, 1, hours[2]),
            graded(c_failover, 1, hours[2]),
            graded(a_unlogged, 0, hours[0]),
            graded(old, 1, hours[1]),
        ],
        hours[0],
    )
    return tmp_path


def test_the_log_joins_live_inputs_with_their_actuals_over_the_window(traffic: Path) -> None:
    got = load(traffic, log="1d")
    assert got.frame.to_dict("list") == {
        "x": [1.5, 2.5, 3.5, 4.5],
        "c": ["a", "b", "c", "d"],
        "y": [1, 0, 1, 0],
    }
    [entry] = got.sources
    assert entry["kind"] == "log"
    assert (entry["rows"], entry["without_inputs"], entry["unreadable_inputs"]) == (4, 1, 0)
    since, until = (datetime.fromisoformat(entry[k]) for k in ("since", "until"))
    assert until - since == timedelta(days=1)
    assert got.fingerprint == fingerprint(got.frame)

    longer = load(traffic, log="7d")  # now the 3-day-old prediction is in the window too
    assert longer.frame["x"].tolist() == [9.5, 1.5, 2.5, 3.5, 4.5]

    newest = load(traffic, log="7d", max_rows=2)
    assert newest.frame["c"].tolist() == ["c", "d"]


def test_logged_inputs_of_another_width_are_skipped_and_counted(tmp_path: Path) -> None:
    wide = answer("w", timedelta(hours=1), [1.0, "a", 3])
    fine = answer("f", timedelta(hours=1), [2.0, "b"])
    write(tmp_path, "predictions", [wide, fine], timedelta(0))
    write(
        tmp_path,
        "actuals",
        [graded(wide, 1, timedelta(0)), graded(fine, 0, timedelta(0))],
        timedelta(0),
    )
    got = load(tmp_path, log="1d")
    assert got.frame["x"].tolist() == [2.0]
    assert got.sources[0]["unreadable_inputs"] == 1


def test_an_empty_log_gives_an_empty_table(tmp_path: Path) -> None:
    got = load(tmp_path, log="1h")
    assert got.rows == 0
    assert list(got.frame.columns) == [*COLUMNS, TARGET]
    assert (got.sources[0]["rows"], got.sources[0]["without_inputs"]) == (0, 0)
