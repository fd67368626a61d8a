"""`/api/v1/models`: register versions and read the registry."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Annotated, Any, BinaryIO

import orjson
from fastapi import APIRouter, BackgroundTasks, Depends, File, Form, UploadFile

from turnout.api.auth import Principal
from turnout.api.deps import Services, deployer, services, viewer
from turnout.api.uploads import unpack
from turnout.api.views import model_json, version_json
from turnout.errors import BadRequest, Forbidden, PayloadTooLarge, PolicyRefused, TurnoutError
from turnout.host.placement import code_bearing
from turnout.registry.flavors import get_flavor
from turnout.registry.names import check_name
from turnout.registry.pipelines import PipelineRef, parse_import, parse_pipeline
from turnout.registry.service import NewVersion, scratch_dir
from turnout.store.records import Permission
from turnout.types import JSON

router = APIRouter(prefix="/models", tags=["models"])


@router.get("")
def list_models(
    svc: Annotated[Services, Depends(services)], _: Annotated[Principal, Depends(viewer)]
) -> list[dict[str, JSON]]:
    return [model_json(m, n, latest) for m, n, latest in svc.registry.list_models()]


@router.get("/{name}")
def show_model(
    name: str, svc: Annotated[Services, Depends(services)], _: Annotated[Principal, Depends(viewer)]
) -> dict[str, JSON]:
    versions = svc.registry.list_versions(name)
    model = svc.registry.get_model(name)
    body = model_json(model, len(versions), versions[-1].version if versions else None)
    body["version_list"] = [version_json(v) for v in versions]
    return body


@router.get("/{name}/versions/{version}")
def show_version(
    name: str,
    version: int,
    svc: Annotated[Services, Depends(services)],
    _: Annotated[Principal, Depends(viewer)],
) -> dict[str, JSON]:
    return version_json(svc.registry.get_version(name, version))


@router.get("/{name}/versions/{version}/lineage")
def version_lineage(
    name: str,
    version: int,
    svc: Annotated[Services, Depends(services)],
    _: Annotated[Principal, Depends(viewer)],
) -> list[dict[str, JSON]]:
    return [version_json(v) for v in svc.registry.lineage(name, version)]


def _metadata(raw: str) -> dict[str, Any]:
    try:
        meta = orjson.loads(raw or "{}")
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"'metadata' is not valid JSON: {exc}") from None
    if not isinstance(meta, dict):
        raise BadRequest("'metadata' must be a JSON object")
    for key in ("metrics", "params", "tags"):
        if not isinstance(meta.get(key, {}), dict):
            raise BadRequest(f"metadata.{key} must be an object")
    for key, value in meta.get("metrics", {}).items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise BadRequest(f"metric {key!r} must be a number, got {value!r}")
    return meta


def _pipeline(
    described: Any, upload: UploadFile | None, workdir: Path, limit: int
) -> PipelineRef | None:
    """The pipeline named in the metadata: an import path, or the uploaded file."""
    if described is None:
        if upload is not None and upload.filename:
            raise BadRequest("pipeline_file was sent without metadata.pipeline")
        return None
    if not isinstance(described, dict) or described.get("kind") not in ("import", "file"):
        raise BadRequest('metadata.pipeline must be {"kind": "import", "ref": "pkg.mod:fit"} '
                         'or {"kind": "file", "name": "train.py", "function": "fit"}')  # fmt: skip
    if described["kind"] == "import":
        return parse_import(str(described.get("ref", "")))
    if upload is None or not upload.filename:
        raise BadRequest("metadata.pipeline names a file but no pipeline_file was uploaded")
    name = Path(str(described.get("name") or upload.filename)).name
    if not name.endswith(".py"):
        raise BadRequest(f"the pipeline file must be a .py file, not {name!r}")
    folder = workdir / "pipeline"
    folder.mkdir()
    path = _save(upload, folder / name, limit)
    return parse_pipeline(f"{path}:{described.get('function') or 'fit'}")


def _within(upload: UploadFile, limit: int) -> BinaryIO:
    """The upload's file, rewound, once it is known to hold at most `limit` bytes."""
    size = upload.file.seek(0, os.SEEK_END)
    if size > limit:
        raise PayloadTooLarge(f"upload over {limit} bytes")
    upload.file.seek(0)
    return upload.file


def _save(upload: UploadFile, dest: Path, limit: int) -> Path:
    size = 0
    with dest.open("wb") as out:
        while chunk := upload.file.read(1 << 20):
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"upload over {limit} bytes")
            out.write(chunk)
    return dest


@router.post("/{name}/versions", status_code=201)
def register_version(
    name: str,
    svc: Annotated[Services, Depends(services)],
    who: Annotated[Principal, Depends(deployer)],
    cleanup: BackgroundTasks,
    artifact: Annotated[UploadFile, File(description="tar archive of the model file or folder")],
    flavor: Annotated[str, Form()],
    metadata: Annotated[str, Form()] = "{}",
    training_data: Annotated[UploadFile | None, File()] = None,
    pipeline_file: Annotated[UploadFile | None, File(description="training pipeline .py")] = None,
) -> dict[str, JSON]:
    """Register a new version from an uploaded tar of its file (kind=file) or folder.

    Versions that bring code of their own need the register-code permission; every refused
    or failed attempt is audited with the caller.
    """
    try:
        return _register(
            name, svc, who, cleanup, artifact, flavor, metadata, training_data, pipeline_file
        )
    except Exception as exc:
        svc.registry.audit_failure(name, actor=who.name, detail=_failure(flavor, exc))
        raise


def _register(
    name: str,
    svc: Services,
    who: Principal,
    cleanup: BackgroundTasks,
    artifact: UploadFile,
    flavor: str,
    metadata: str,
    training_data: UploadFile | None,
    pipeline_file: UploadFile | None,
) -> dict[str, JSON]:
    check_name(name, "model")
    meta = _metadata(metadata)
    # Files created and deleted are much of what a small model's registration costs: the
    # archive is unpacked straight from the upload, and the scratch folder is removed after
    # the answer has been sent (at once when registration fails).
    workdir = scratch_dir(svc.upload_dir)
    try:
        files_dir = workdir / "files"
        written = unpack(_within(artifact, svc.max_upload_bytes), files_dir)
        if meta.get("kind", "dir") == "file":
            if len(written) != 1:
                raise BadRequest("kind=file needs an archive with exactly one file")
            source = written[0]
        else:
            source = files_dir
        _check_code_permission(who, flavor, source, pipeline=meta.get("pipeline") is not None)
        data_path = None
        if training_data is not None and training_data.filename:
            data_name = Path(training_data.filename).name or "training.csv"
            data_path = _save(training_data, workdir / data_name, svc.max_upload_bytes)
        pipeline = _pipeline(meta.get("pipeline"), pipeline_file, workdir, svc.max_upload_bytes)
        record = svc.registry.register(
            NewVersion(
                model=name,
                source=source,
                flavor=flavor,
                metrics=meta.get("metrics", {}),
                params=meta.get("params", {}),
                tags=meta.get("tags", {}),
                description=str(meta.get("description", "")),
                training_data=data_path,
                target=meta.get("target"),
                parent_version=meta.get("parent_version"),
                pipeline=pipeline,
                actor=who.name,
            )
        )
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    cleanup.add_task(shutil.rmtree, workdir, ignore_errors=True)
    return version_json(record)


def _check_code_permission(who: Principal, flavor: str, source: Path, *, pipeline: bool) -> None:
    """Refuse a version that brings code of its own unless the caller may register code.

    The model host's notion (code-bearing flavors and pickle files) plus what the flavor
    reads from the files themselves (an MLflow model's MLmodel); a training pipeline is code.
    """
    if who.allowed(Permission.REGISTER_CODE):
        return
    paths = [p.name for p in source.rglob("*") if p.is_file()] if source.is_dir() else [source.name]
    if pipeline or code_bearing(flavor, paths) or get_flavor(flavor).runs_code(source):
        what = "a training pipeline" if pipeline else f"a {flavor} model that runs its own code"
        raise Forbidden(
            f"token {who.name!r} may not register {what} (python flavor, pickles, MLflow "
            f"models with code, pipelines): an admin grants the "
            f"{Permission.REGISTER_CODE.value!r} permission"
        )


SHOWN_ERRORS = (BadRequest, Forbidden, PolicyRefused, PayloadTooLarge)
"""Errors whose message turnout wrote about the request itself: safe to keep in the audit
log. Other messages may carry what a model's own code printed, and are left out."""


def _failure(flavor: str, exc: Exception) -> dict[str, JSON]:
    """What the audit log keeps of a failed registration: the kind of failure and, when
    turnout wrote it, the reason."""
    status = int(exc.status) if isinstance(exc, TurnoutError) else 500
    if isinstance(exc, SHOWN_ERRORS):
        reason = exc.message[:500]
    elif isinstance(exc, TurnoutError):
        reason = "the model failed its registration check"
    else:
        reason = "internal error"
    return {"flavor": flavor[:100], "status": status, "error": type(exc).__name__, "reason": reason}
