"""Uploaded archives unpack within caps: no sparse members, bounded size and entries, and
entries that collide are a clear 400 that names no server path."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fixtures.server import LiveServer
from turnout.api.uploads import ArchiveLimits, unpack
from turnout.errors import BadRequest, PayloadTooLarge


def tar_of(entries: list[tuple[str, bytes | None]]) -> io.BytesIO:
    """A tar with these files (None: a folder), in this order."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    return buffer


def sparse_tar(folder: Path) -> bytes:
    """A 256 MB file that is all hole, packed by GNU tar with -S: a few KB."""
    big = folder / "model.onnx"
    with big.open("wb") as handle:
        handle.truncate(256 << 20)
    archive = folder / "sparse.tar"
    subprocess.run(["tar", "-S", "-cf", str(archive), "-C", str(folder), big.name], check=True)
    return archive.read_bytes()


def test_sparse_member_is_refused(tmp_path: Path) -> None:
    data = sparse_tar(tmp_path)
    assert len(data) < 64 << 10
    dest = tmp_path / "out"
    with pytest.raises(BadRequest, match="sparse"):
        unpack(io.BytesIO(data), dest)
    assert not (dest / "model.onnx").exists()


def test_total_size_is_capped(tmp_path: Path) -> None:
    archive = tar_of([("a.bin", b"x" * 600), ("b.bin", b"y" * 600)])
    with pytest.raises(PayloadTooLarge, match="1000 bytes"):
        unpack(archive, tmp_path / "out", ArchiveLimits(max_bytes=1000))


def test_entry_count_is_capped(tmp_path: Path) -> None:
    archive = tar_of([(f"d{i}", None) for i in range(5)] + [("m.bin", b"x")])
    with pytest.raises(PayloadTooLarge, match="over 3 entries"):
        unpack(archive, tmp_path / "out", ArchiveLimits(max_entries=3))


def test_gzip_bomb_stops_at_the_cap(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("zeros.bin")
        info.size = 64 << 20
        tar.addfile(info, io.BytesIO(bytes(info.size)))
    assert len(buffer.getvalue()) < 1 << 20
    buffer.seek(0)
    with pytest.raises(PayloadTooLarge):
        unpack(buffer, tmp_path / "out", ArchiveLimits(max_bytes=1 << 20))
    assert not (tmp_path / "out" / "zeros.bin").exists()


@pytest.mark.parametrize(
    "entries",
    [
        [("a", b"file"), ("a/b", b"inside")],
        [("a/b", b"inside"), ("a", b"file")],
        [("a", b"once"), ("a", b"twice")],
    ],
    ids=["file-then-folder", "folder-then-file", "twice"],
)
def test_colliding_entries_are_a_bad_request(
    entries: list[tuple[str, bytes | None]], tmp_path: Path
) -> None:
    with pytest.raises(BadRequest) as refused:
        unpack(tar_of(entries), tmp_path / "out")
    assert str(tmp_path) not in refused.value.message


def test_deep_paths_are_refused(tmp_path: Path) -> None:
    archive = tar_of([("a/" * 2000 + "m.bin", b"x")])
    with pytest.raises(BadRequest, match="nested too deep"):
        unpack(archive, tmp_path / "out")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path_factory.mktemp("uploads") / "home").start()
    yield live
    live.stop()


@pytest.mark.server
def test_server_answers_bad_archives_with_4xx_and_no_paths(
    server: LiveServer, tmp_path: Path
) -> None:
    for archive in (tar_of([("a", b"x"), ("a/b", b"y")]).getvalue(), sparse_tar(tmp_path)):
        response = httpx.post(
            f"{server.url}/api/v1/models/m/versions",
            headers={"authorization": f"Bearer {server.token}"},
            data={"flavor": "onnx"},
            files={"artifact": ("a.tar", archive, "application/x-tar")},
        )
        assert response.status_code == 400, response.text
        assert str(server.home) not in response.text
        assert os.sep + "tmp" + os.sep not in response.json()["error"]
