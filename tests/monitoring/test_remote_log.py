"""The prediction log shared on an object store: nodes push their own files, pull everyone
else's, and read every node's rows exactly once, through compaction, retention and outages.
Against moto's S3 server, with the boto3 client that talks to AWS S3."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from tests.fixtures.s3 import S3Server, s3_server
from tests.fixtures.server import free_port
from tests.monitoring.test_query import DEPLOYMENT, answer, write
from turnout.errors import StoreUnavailable
from turnout.monitoring import compaction
from turnout.monitoring.layout import PREDICTION_SCHEMA, PREDICTIONS
from turnout.monitoring.query import LogReader
from turnout.monitoring.remote import RemoteLog, open_remote_log
from turnout.monitoring.segments import write_segment
from turnout.store.s3 import s3_client

__all__ = ["s3_server"]

NOW = datetime.now(UTC).replace(minute=30, second=0, microsecond=0)
LAST_HOUR = NOW - timedelta(hours=2)


def node(server: S3Server, bucket: str, root: Path) -> RemoteLog:
    return open_remote_log(f"s3://{bucket}/shared/log", root, endpoint_url=server.endpoint)


def rows(prefix: str, n: int, when: datetime = LAST_HOUR) -> list[dict[str, object]]:
    return [answer(f"{prefix}{i:04d}", ts=when + timedelta(seconds=i)) for i in range(n)]


def requests(root: Path, remote: RemoteLog | None = None) -> int:
    reader = LogReader(root, remote=remote)
    return sum(group.requests for group in reader.summary(DEPLOYMENT))


def keys(server: S3Server, bucket: str) -> set[str]:
    listed = server.client().list_objects_v2(Bucket=bucket, Prefix="shared/log/")
    return {item["Key"].removeprefix("shared/log/") for item in listed.get("Contents", [])}


@pytest.fixture
def bucket(s3_server: S3Server) -> str:
    return s3_server.bucket()


Nodes = tuple[RemoteLog, RemoteLog]


@pytest.fixture
def two_nodes(s3_server: S3Server, bucket: str, tmp_path: Path) -> Nodes:
    """Two nodes' log folders sharing `bucket`."""
    return node(s3_server, bucket, tmp_path / "a"), node(s3_server, bucket, tmp_path / "b")


def test_each_node_reads_every_nodes_rows_exactly_once(
    two_nodes: Nodes, s3_server: S3Server, bucket: str
) -> None:
    a, b = two_nodes
    write(a.root, rows("a", 30), writer="wa", now=LAST_HOUR)
    write(a.root, rows("c", 5), writer="wa", now=LAST_HOUR)
    write(b.root, rows("b", 12), writer="wb", now=LAST_HOUR)
    assert a.push() == 2
    assert b.push() == 1

    assert requests(a.root, a) == 47
    assert requests(b.root, b) == 47
    assert a.push() == 0  # what a pulled is b's, never pushed back
    assert b.push() == 0
    assert len(keys(s3_server, bucket)) == 3


def test_a_compaction_replaces_the_segments_on_every_node_without_counting_twice(
    two_nodes: Nodes, s3_server: S3Server, bucket: str
) -> None:
    a, b = two_nodes
    for part in range(3):
        write(a.root, rows(f"p{part}", 10), writer="wa", now=LAST_HOUR)
    a.push()
    assert requests(b.root, b) == 30

    assert compaction.compact_writer(a.root, "wa", now=NOW) == 3
    a.push()
    assert [k.rsplit("/", 1)[1] for k in keys(s3_server, bucket)] == [
        f"wa-{LAST_HOUR:%H}.compact.parquet"
    ]
    b.pull()
    assert requests(b.root) == 30
    pulled = sorted(p.name for p in (b.root / PREDICTIONS).rglob("*.parquet"))
    assert pulled == [f"wa-{LAST_HOUR:%H}.compact.parquet"]


def test_a_reader_counts_the_compacted_file_alone_while_the_old_segments_linger(
    two_nodes: Nodes, s3_server: S3Server, bucket: str
) -> None:
    """Between a writer's upload of a compacted file and the deletion of its segments, a
    reader that pulled both counts each row once."""
    a, b = two_nodes
    for part in range(2):
        write(a.root, rows(f"p{part}", 10), writer="wa", now=LAST_HOUR)
    a.push()
    compaction.compact_writer(a.root, "wa", now=NOW)
    compact = next((a.root / PREDICTIONS).rglob("*.compact.parquet"))
    relative = compact.relative_to(a.root).as_posix()
    s3_server.client().upload_file(str(compact), bucket, f"shared/log/{relative}")
    assert len(keys(s3_server, bucket)) == 3  # the segments are still there
    assert requests(b.root, b) == 20


def test_a_node_withdraws_the_files_it_deleted_and_others_drop_them(
    two_nodes: Nodes, s3_server: S3Server, bucket: str
) -> None:
    a, b = two_nodes
    segment = write(a.root, rows("a", 4), writer="wa", now=LAST_HOUR)
    a.push()
    assert requests(b.root, b) == 4
    segment.unlink()
    assert a.push() == 1
    assert keys(s3_server, bucket) == set()
    b.pull()
    assert requests(b.root) == 0


def test_retention_deletes_old_days_in_the_store_and_a_pull_skips_them(
    two_nodes: Nodes, s3_server: S3Server, bucket: str
) -> None:
    a, b = two_nodes
    old = NOW - timedelta(days=40)
    write(a.root, rows("old", 3, old), writer="wa", now=old)
    write(a.root, rows("new", 5), writer="wa", now=LAST_HOUR)
    a.push()
    b.pull(retention_days=30)
    assert requests(b.root) == 5  # the old day is not brought in
    assert a.expire(30, now=NOW) == 1
    assert all(f"{old:%Y-%m-%d}" not in key for key in keys(s3_server, bucket))
    assert len(keys(s3_server, bucket)) == 1


def test_while_the_store_is_down_files_wait_and_readers_answer_from_what_they_have(
    two_nodes: Nodes,
) -> None:
    a, b = two_nodes
    write(b.root, rows("b", 6), writer="wb", now=LAST_HOUR)
    b.push()
    assert requests(a.root, a) == 6
    up = a.client
    a.client = s3_client(f"http://127.0.0.1:{free_port()}", what="a test")  # nothing listens
    write(a.root, rows("a", 9), writer="wa", now=LAST_HOUR)
    with pytest.raises(StoreUnavailable, match="cannot be reached"):
        a.push()
    a.refresh(max_age_s=0)  # a reader's pull: it fails, counted, and does not raise
    assert a.failures == 1
    assert requests(a.root, a) == 15  # the rows this node has
    assert "testing-secret" not in (a.last_error or "")

    a.client = up  # the store is back: the waiting file goes up
    assert a.push() == 1
    assert requests(b.root, b) == 15


@pytest.mark.parametrize(
    "key",
    [
        "predictions/day=2026-01-01/../../../escaped.parquet",
        "predictions/day=2026-01-01/sub/nested-00-1.parquet",
        "predictions/day=2026-01-01/.hidden-00-1.parquet",
        "predictions/day=not-a-day/w-00-1.parquet",
        "predictions/w-00-1.parquet",
        "elsewhere/day=2026-01-01/w-00-1.parquet",
        "predictions/day=2026-01-01/w-00-1.txt",
    ],
)
def test_a_pull_never_writes_an_object_whose_key_is_not_a_log_file(
    s3_server: S3Server, bucket: str, tmp_path: Path, key: str
) -> None:
    s3_server.client().put_object(Bucket=bucket, Key=f"shared/log/{key}", Body=b"not parquet")
    b = node(s3_server, bucket, tmp_path / "node" / "b")
    b.pull()
    written = [p for p in (tmp_path / "node").rglob("*") if p.is_file()]
    assert all(p.parent.name == ".remote" for p in written), written
    assert not (tmp_path / "escaped.parquet").exists()


def test_an_unreachable_store_or_missing_bucket_is_named_at_open(
    s3_server: S3Server, tmp_path: Path
) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(StoreUnavailable, match=endpoint):
        open_remote_log("s3://logs/p", tmp_path, endpoint_url=endpoint)
    with pytest.raises(StoreUnavailable, match="'no-such-bucket' does not exist"):
        open_remote_log("s3://no-such-bucket/p", tmp_path, endpoint_url=s3_server.endpoint)


def test_a_resumed_writer_withdraws_a_file_another_node_pushed(
    two_nodes: Nodes, s3_server: S3Server, bucket: str
) -> None:
    """What a resumed batch job does with the rows an earlier run logged elsewhere."""
    a, b = two_nodes
    table = pa.Table.from_pylist(rows("x", 3), schema=PREDICTION_SCHEMA)
    segment = write_segment(a.root, PREDICTIONS, "batch_7", table, now=LAST_HOUR)
    a.push()
    b.pull()
    pulled = b.root / segment.relative_to(a.root)
    assert pulled.exists()
    b.delete(pulled)
    assert keys(s3_server, bucket) == set()
    b.pull()
    assert not pulled.exists()
    assert requests(b.root) == 0


def test_a_corrupted_object_is_refused_and_the_rest_of_the_log_still_reads(
    two_nodes: Nodes, s3_server: S3Server, bucket: str
) -> None:
    a, b = two_nodes
    segment = write(a.root, rows("a", 7), writer="wa", now=LAST_HOUR)
    a.push()
    relative = segment.relative_to(a.root).as_posix()
    bad = relative.replace("wa-", "wz-")
    s3_server.client().put_object(Bucket=bucket, Key=f"shared/log/{bad}", Body=b"PAR1garbage")
    assert requests(b.root, b) == 7
    assert not (b.root / bad).exists()
    assert b.failures == 1
    assert "is not Parquet" in (b.last_error or "")
    b.pull()
    assert b.failures == 1  # not fetched again until it changes


def test_a_query_over_recent_days_pulls_those_days_and_keeps_older_ones(two_nodes: Nodes) -> None:
    a, b = two_nodes
    old = NOW - timedelta(days=5)
    write(a.root, rows("old", 3, old), writer="wa", now=old)
    a.push()
    assert requests(b.root, b) == 3  # no window: every day
    write(a.root, rows("new", 4), writer="wa", now=LAST_HOUR)
    a.push()
    recent = LogReader(b.root, remote=b)
    b.refresh(max_age_s=0, since=(NOW - timedelta(days=1)).date())
    groups = recent.summary(DEPLOYMENT, since=NOW - timedelta(hours=6))
    assert sum(g.requests for g in groups) == 4
    assert requests(b.root) == 7  # the older day stayed, though this pull did not list it


def test_a_file_compacted_away_while_a_push_lists_it_is_skipped_not_a_failure(
    s3_server: S3Server, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = node(s3_server, bucket, tmp_path / "a")
    gone = write(a.root, rows("gone", 2), writer="wa", now=LAST_HOUR)
    kept = write(a.root, rows("kept", 3), writer="wa", now=LAST_HOUR)
    listed = a._local_files()

    def listing_then_compaction() -> dict[str, tuple[Path, list[int]]]:
        gone.unlink()  # deleted after the push listed it, before its upload
        return listed

    monkeypatch.setattr(a, "_local_files", listing_then_compaction)
    assert a.push() == 1
    assert keys(s3_server, bucket) == {kept.relative_to(a.root).as_posix()}
