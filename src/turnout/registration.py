"""What registering a version uploads, as one `Call`: the artifact as a gzipped tar, its
metadata, training data and pipeline code; a model in an MLflow registry or run is first
downloaded (see `mlflow_import`). Building it reads local files but never the server."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path
from typing import Any, TypedDict

import orjson

from turnout import mlflow_import
from turnout.calls import Call
from turnout.errors import TurnoutError


class Registration(TypedDict, total=False):
    """What a version carries besides its files.

    `pipeline` names the training code for retraining: an import path (`pkg.mod:fit`,
    importable on the server) or a local Python file (`train.py` or `train.py:function`),
    which is uploaded with the version."""

    metrics: dict[str, float] | None
    params: dict[str, str] | None
    tags: dict[str, str] | None
    description: str
    training_data: str | Path | None
    target: str | None
    parent_version: int | None
    pipeline: str | None


def pack(path: Path) -> bytes:
    """A file or folder as a gzipped tar, paths relative to it; the same files give the
    same bytes (no time in the gzip header)."""
    buffer = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=1, mtime=0) as zipped,
        tarfile.open(fileobj=zipped, mode="w") as tar,
    ):
        if path.is_file():
            tar.add(path, arcname=path.name)
        else:
            for item in sorted(path.rglob("*")):
                if item.is_file() and "__pycache__" not in item.parts:
                    tar.add(item, arcname=item.relative_to(path).as_posix())
    return buffer.getvalue()


def register(name: str, path: str | Path, *, flavor: str, options: Registration) -> Call:
    """The upload of `path`: a local file or folder, or an MLflow URI (`models:/NAME@ALIAS`,
    `models:/NAME/VERSION`, `runs:/RUN_ID/PATH`) whose source is kept as tags."""
    if not mlflow_import.is_mlflow_uri(str(path)):
        return _upload(name, Path(path), flavor=flavor, options=options)
    with mlflow_import.downloaded(str(path), flavor=flavor) as imported:
        tags = {**imported.tags, **(options.get("tags") or {})}
        return _upload(name, imported.folder, flavor=flavor, options={**options, "tags": tags})


def _upload(name: str, source: Path, *, flavor: str, options: Registration) -> Call:
    if not source.exists():
        raise TurnoutError(f"{source} does not exist")
    meta: dict[str, Any] = {
        "kind": "file" if source.is_file() else "dir",
        "metrics": options.get("metrics") or {},
        "params": options.get("params") or {},
        "tags": options.get("tags") or {},
        "description": options.get("description", ""),
        "target": options.get("target"),
        "parent_version": options.get("parent_version"),
    }
    files: dict[str, Any] = {"artifact": ("artifact.tar.gz", pack(source), "application/gzip")}
    training_data = options.get("training_data")
    if training_data is not None:
        data = Path(training_data)
        if not data.is_file():
            raise TurnoutError(f"training data {data} is not a file")
        files["training_data"] = (data.name, data.read_bytes(), "application/octet-stream")
    pipeline = options.get("pipeline")
    if pipeline is not None:
        meta["pipeline"] = _pipeline(pipeline, files)
    form = {"flavor": flavor, "metadata": orjson.dumps(meta).decode()}
    return Call("POST", f"/api/v1/models/{name}/versions", data=form, files=files)


def _pipeline(pipeline: str, files: dict[str, Any]) -> dict[str, str]:
    """The pipeline's reference, adding its file to `files` when it is a local one."""
    file_part, _, function = pipeline.partition(".py:")
    if not (pipeline.endswith(".py") or function):
        return {"kind": "import", "ref": pipeline}
    code = Path(pipeline if not function else file_part + ".py").expanduser()
    if not code.is_file():
        raise TurnoutError(f"pipeline file {code} does not exist")
    files["pipeline_file"] = (code.name, code.read_bytes(), "text/x-python")
    return {"kind": "file", "name": code.name, "function": function or "fit"}
