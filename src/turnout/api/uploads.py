"""Unpack an uploaded artifact archive safely: regular files only, never outside the folder,
within caps on the unpacked size, the number of entries and the depth of paths."""

from __future__ import annotations

import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from turnout.errors import BadRequest, PayloadTooLarge
from turnout.store.artifacts import safe_relative_path

MAX_PATH_PARTS = 64
MAX_PATH_CHARS = 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class ArchiveLimits:
    """What one archive may unpack to: a small upload must not become a full disk."""

    max_bytes: int = 8 << 30
    max_entries: int = 10_000


def unpack(archive: BinaryIO, dest: Path, limits: ArchiveLimits | None = None) -> list[Path]:
    """Extract a tar (optionally gzipped) into `dest`; returns the files written.

    Sparse members are refused (a few KB can claim gigabytes), as are entries that collide
    (`a` and `a/b`, or a name twice); no message names a server path.
    """
    limits = limits or ArchiveLimits()
    written: list[Path] = []
    names: set[str] = set()
    total = entries = 0
    try:
        with tarfile.open(fileobj=archive, mode="r:*") as tar:
            for member in tar:
                entries += 1
                if entries > limits.max_entries:
                    raise PayloadTooLarge(f"the archive holds over {limits.max_entries} entries")
                name = member.name.removeprefix("./").rstrip("/")
                if member.isdir() or not name:
                    continue
                _check_member(member, name)
                if name in names:
                    raise BadRequest(f"archive entry {name!r} appears twice")
                names.add(name)
                total += member.size
                if total > limits.max_bytes:
                    raise PayloadTooLarge(f"the archive unpacks to over {limits.max_bytes} bytes")
                written.append(_extract(tar, member, dest / safe_relative_path(name)))
    except tarfile.TarError as exc:
        raise BadRequest(f"the artifact upload is not a valid tar archive: {exc}") from exc
    if not written:
        raise BadRequest("the artifact archive holds no files")
    return written


def _check_member(member: tarfile.TarInfo, name: str) -> None:
    if not member.isfile():
        raise BadRequest(f"archive entry {member.name!r} is not a regular file")
    if member.issparse():
        raise BadRequest(f"archive entry {member.name!r} is a sparse file; pack it without -S")
    if len(name) > MAX_PATH_CHARS or name.count("/") >= MAX_PATH_PARTS:
        raise BadRequest(
            f"archive entry {name[:80]!r}... is nested too deep (at most {MAX_PATH_PARTS} "
            f"levels and {MAX_PATH_CHARS} characters)"
        )


def _extract(tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path) -> Path:
    source = tar.extractfile(member)
    if source is None:
        raise BadRequest(f"archive entry {member.name!r} cannot be read")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with source, target.open("wb") as out:
            shutil.copyfileobj(source, out)
    except (FileExistsError, NotADirectoryError, IsADirectoryError):
        raise BadRequest(
            f"archive entry {member.name!r} collides with another entry (a file and a folder "
            "of the same name)"
        ) from None
    return target
