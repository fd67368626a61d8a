"""Unpack an uploaded artifact archive safely: regular files only, never outside the folder."""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path
from typing import BinaryIO

from turnout.errors import BadRequest
from turnout.store.artifacts import safe_relative_path


def unpack(archive: BinaryIO, dest: Path) -> list[Path]:
    """Extract a tar (optionally gzipped) into `dest`; returns the files written."""
    written = []
    try:
        with tarfile.open(fileobj=archive, mode="r:*") as tar:
            for member in tar:
                name = member.name.removeprefix("./")
                if member.isdir() or not name:
                    continue
                if not member.isfile():
                    raise BadRequest(f"archive entry {member.name!r} is not a regular file")
                relative = safe_relative_path(name)
                target = dest / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                if source is None:
                    raise BadRequest(f"archive entry {member.name!r} cannot be read")
                with source, target.open("wb") as out:
                    shutil.copyfileobj(source, out)
                written.append(target)
    except tarfile.TarError as exc:
        raise BadRequest(f"the artifact upload is not a valid tar archive: {exc}") from exc
    if not written:
        raise BadRequest("the artifact archive holds no files")
    return written
