"""Data files a caller sends with a retrain (or names later in a job): stored under the
server's first data root, so the server reads them as any file it is allowed to read.

A path given to the CLI or SDK means the caller's file, not one on the server: they upload it
here and pass on the path this returns. Names are reduced to a plain file name, only CSV and
Parquet are taken, and the whole upload is bounded like a model upload.
"""

from __future__ import annotations

import re
import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, UploadFile

from turnout.api.auth import Principal
from turnout.api.deps import Services, deployer, services
from turnout.errors import BadRequest, PayloadTooLarge
from turnout.store import metadata as md

router = APIRouter(prefix="/data", tags=["data"])

SUFFIXES = (".csv", ".parquet", ".pq")
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._ -]{0,199}$")
MAX_FILES = 1000


@router.post("", status_code=201)
def upload_data(
    svc: Annotated[Services, Depends(services)],
    who: Annotated[Principal, Depends(deployer)],
    files: Annotated[list[UploadFile], File(description="CSV or Parquet files")],
) -> dict[str, Any]:
    """Store the files in a new folder under the first data root; returns the path to name
    as retrain data (the file itself when one was sent, else the folder)."""
    if len(files) > MAX_FILES:
        raise BadRequest(f"send at most {MAX_FILES} files at once")
    names = [_name(f.filename) for f in files]
    if len(set(names)) != len(names):
        raise BadRequest("two uploaded files have the same name")
    folder = _folder(svc)
    budget = svc.max_upload_bytes
    stored = []
    try:
        for upload, name in zip(files, names, strict=True):
            size = _save(upload, folder / name, budget)
            budget -= size
            stored.append({"name": name, "bytes": size})
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)  # all of it or nothing
        raise
    path = folder / names[0] if len(names) == 1 else folder
    with svc.deployments.db.write() as conn:
        md.audit(conn, actor=who.name, action="data.upload", target=str(path),
                 detail={"files": stored})  # fmt: skip
    return {"path": str(path), "files": stored, "bytes": sum(s["bytes"] for s in stored)}


def _name(filename: str | None) -> str:
    name = Path((filename or "").replace("\\", "/")).name
    if not SAFE_NAME.match(name) or name.startswith("."):
        raise BadRequest(
            f"data file name {filename!r} is not a plain file name (letters, digits, '.', '_', "
            "'-', spaces)"
        )
    if not name.lower().endswith(SUFFIXES):
        raise BadRequest(f"data file {name!r} is not CSV or Parquet ({', '.join(SUFFIXES)})")
    return name


def _folder(svc: Services) -> Path:
    roots = svc.data_access.roots
    base = roots[0] if roots else svc.upload_dir / "data"
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    folder = base / "uploads" / f"{stamp}-{uuid.uuid4().hex[:8]}"
    folder.mkdir(parents=True, mode=0o700)
    return folder


def _save(upload: UploadFile, dest: Path, limit: int) -> int:
    size = 0
    with dest.open("xb") as out:
        while chunk := upload.file.read(1 << 20):
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"the data upload is over {limit} bytes")
            out.write(chunk)
    return size
