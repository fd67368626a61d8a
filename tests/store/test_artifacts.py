"""The local artifact store: content-addressed, atomic, verified, never escaped."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from turnout.errors import ArtifactCorrupted, BadRequest, NotFound
from turnout.store.artifacts import LocalArtifactStore, open_artifact_store, safe_relative_path


@pytest.fixture
def store(tmp_path: Path) -> LocalArtifactStore:
    return LocalArtifactStore(tmp_path / "artifacts")


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_put_is_content_addressed_and_idempotent(store: LocalArtifactStore, tmp_path: Path) -> None:
    data = b"model bytes" * 1000
    sha, size = store.put(write(tmp_path / "a.bin", data))
    again, _ = store.put(write(tmp_path / "b.bin", data))
    assert sha == again == hashlib.sha256(data).hexdigest()
    assert size == len(data)
    blobs = [p for p in (store.root / "sha256").rglob("*") if p.is_file()]
    assert len(blobs) == 1
    assert not any((store.root / "tmp").iterdir())


def test_fetch_returns_identical_bytes(store: LocalArtifactStore, tmp_path: Path) -> None:
    sha, _ = store.put(write(tmp_path / "a.bin", b"abc"))
    store.fetch(sha, tmp_path / "out" / "a.bin")
    assert (tmp_path / "out" / "a.bin").read_bytes() == b"abc"


def test_corruption_is_detected_on_fetch_and_verify(
    store: LocalArtifactStore, tmp_path: Path
) -> None:
    sha, _ = store.put(write(tmp_path / "a.bin", b"original"))
    blob = store.root / "sha256" / sha[:2] / sha
    os.chmod(blob, 0o644)
    blob.write_bytes(b"tampered")
    with pytest.raises(ArtifactCorrupted, match="corrupted"):
        store.fetch(sha, tmp_path / "out.bin")
    assert not (tmp_path / "out.bin").exists()
    with pytest.raises(ArtifactCorrupted):
        store.verify(sha)


def test_missing_blob_is_not_found(store: LocalArtifactStore) -> None:
    with pytest.raises(NotFound, match="missing"):
        store.verify("a" * 64)


@pytest.mark.parametrize("bad", ["../etc/passwd", "a/../../b", "/abs", "", "a//b", "./a", "a\\b"])
def test_paths_cannot_escape(bad: str) -> None:
    with pytest.raises(BadRequest):
        safe_relative_path(bad)


def test_digests_are_validated(store: LocalArtifactStore) -> None:
    with pytest.raises(BadRequest, match="not a sha256"):
        store.exists("../../etc/passwd")


def test_unknown_scheme_is_refused() -> None:
    with pytest.raises(BadRequest, match="unsupported artifact store"):
        open_artifact_store("ftp://example/bucket")
