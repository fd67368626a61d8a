"""The S3 artifact store against a real S3 API (moto's server): content addressing, checks
on every read, the bounded cache, and clear errors when the service is missing or broken."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from tests.fixtures.s3 import S3Server
from tests.fixtures.server import free_port
from turnout.errors import ArtifactCorrupted, NotFound, StoreUnavailable
from turnout.store.artifacts import open_artifact_store
from turnout.store.s3 import S3ArtifactStore, open_s3


def store(s3: S3Server, tmp_path: Path, *, cache_bytes: int = 1 << 30) -> S3ArtifactStore:
    return open_s3(
        f"s3://{s3.bucket()}/team/models",
        endpoint_url=s3.endpoint,
        cache=tmp_path / "cache",
        cache_bytes=cache_bytes,
    )


def blob(tmp_path: Path, content: bytes, name: str = "blob") -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


def test_put_then_fetch_gives_the_same_bytes_under_the_content_address(
    s3_server: S3Server, tmp_path: Path
) -> None:
    artifacts = store(s3_server, tmp_path)
    content = os.urandom(300_000)
    sha256, size = artifacts.put(blob(tmp_path, content))
    assert (sha256, size) == (hashlib.sha256(content).hexdigest(), len(content))
    keys = [
        o["Key"] for o in s3_server.client().list_objects_v2(Bucket=artifacts.bucket)["Contents"]
    ]
    assert keys == [f"team/models/sha256/{sha256[:2]}/{sha256}"]
    assert artifacts.put(blob(tmp_path, content, "again")) == (sha256, size)  # stored once
    artifacts.fetch(sha256, tmp_path / "out" / "model.bin")
    assert (tmp_path / "out" / "model.bin").read_bytes() == content
    assert artifacts.exists(sha256)
    artifacts.verify(sha256)


def test_a_node_reads_what_another_node_stored(s3_server: S3Server, tmp_path: Path) -> None:
    bucket = s3_server.bucket()
    first = open_s3(
        f"s3://{bucket}/p",
        endpoint_url=s3_server.endpoint,
        cache=tmp_path / "a",
        cache_bytes=1 << 30,
    )
    second = open_s3(
        f"s3://{bucket}/p",
        endpoint_url=s3_server.endpoint,
        cache=tmp_path / "b",
        cache_bytes=1 << 30,
    )
    sha256, _ = first.put(blob(tmp_path, b"weights"))
    second.fetch(sha256, tmp_path / "copy")
    assert (tmp_path / "copy").read_bytes() == b"weights"


def test_a_corrupted_object_is_refused_and_never_cached(
    s3_server: S3Server, tmp_path: Path
) -> None:
    artifacts = store(s3_server, tmp_path)
    sha256, _ = artifacts.put(blob(tmp_path, b"the real model"))
    s3_server.client().put_object(
        Bucket=artifacts.bucket, Key=artifacts._key(sha256), Body=b"something else"
    )
    with pytest.raises(ArtifactCorrupted, match="corrupted"):
        artifacts.fetch(sha256, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert list((tmp_path / "cache").glob("*/*")) == []
    with pytest.raises(ArtifactCorrupted):
        artifacts.verify(sha256)


def test_a_corrupted_cache_file_is_refused_then_fetched_again(
    s3_server: S3Server, tmp_path: Path
) -> None:
    artifacts = store(s3_server, tmp_path)
    sha256, _ = artifacts.put(blob(tmp_path, b"model bytes"))
    artifacts.fetch(sha256, tmp_path / "first")
    cached = artifacts._cached(sha256)
    cached.chmod(0o600)
    cached.write_bytes(b"bit rot")
    with pytest.raises(ArtifactCorrupted):
        artifacts.fetch(sha256, tmp_path / "second")
    artifacts.fetch(sha256, tmp_path / "third")  # downloaded again, intact
    assert (tmp_path / "third").read_bytes() == b"model bytes"


def test_the_cache_keeps_to_its_bound_dropping_the_least_recently_used(
    s3_server: S3Server, tmp_path: Path
) -> None:
    artifacts = store(s3_server, tmp_path, cache_bytes=2500)
    shas = [artifacts.put(blob(tmp_path, bytes([i]) * 1000, f"b{i}"))[0] for i in range(3)]
    artifacts.fetch(shas[0], tmp_path / "o0")
    artifacts.fetch(shas[1], tmp_path / "o1")
    os.utime(artifacts._cached(shas[0]), (1, 1))  # used long ago
    artifacts.fetch(shas[2], tmp_path / "o2")
    cached = {p.name for p in (tmp_path / "cache").glob("*/*")}
    assert cached == {shas[1], shas[2]}
    artifacts.fetch(shas[0], tmp_path / "again")  # evicted blobs come back from the store
    assert (tmp_path / "again").read_bytes() == bytes([0]) * 1000


def test_a_missing_blob_is_not_found(s3_server: S3Server, tmp_path: Path) -> None:
    artifacts = store(s3_server, tmp_path)
    missing = "0" * 64
    assert not artifacts.exists(missing)
    with pytest.raises(NotFound):
        artifacts.fetch(missing, tmp_path / "out")


def test_an_unreachable_store_at_start_names_its_endpoint(tmp_path: Path) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(StoreUnavailable, match=endpoint.replace(".", r"\.")):
        open_s3("s3://models/p", endpoint_url=endpoint, cache=tmp_path, cache_bytes=1 << 20)


def test_a_missing_bucket_is_named(s3_server: S3Server, tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailable, match="bucket 'nope' does not exist"):
        open_s3("s3://nope/p", endpoint_url=s3_server.endpoint, cache=tmp_path, cache_bytes=1)


def test_an_outage_fails_writes_clearly_and_never_leaks_credentials(
    s3_server: S3Server, tmp_path: Path
) -> None:
    import boto3

    artifacts = store(s3_server, tmp_path)
    artifacts.client = boto3.client(
        "s3", endpoint_url=f"http://127.0.0.1:{free_port()}", region_name="us-east-1"
    )
    with pytest.raises(StoreUnavailable) as raised:
        artifacts.put(blob(tmp_path, b"new model"))
    assert "cannot be reached" in raised.value.message
    assert "testing-secret" not in raised.value.message


@pytest.mark.parametrize("uri", ["s3://", "s3:///prefix"])
def test_an_s3_uri_without_a_bucket_is_refused(uri: str) -> None:
    with pytest.raises(Exception, match="names no bucket"):
        open_artifact_store(uri)
