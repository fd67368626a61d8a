"""Models taken from an MLflow tracking server or registry (`models:/NAME@ALIAS`,
`models:/NAME/VERSION`, `runs:/RUN_ID/PATH`): resolved with MLflow's own client through
MLFLOW_TRACKING_URI, downloaded to a temporary folder, and registered by the SDK and CLI as
any MLflow model directory, with where they came from kept as tags."""

from __future__ import annotations

import importlib
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import yaml

from turnout import redact, yamltext
from turnout.errors import BadRequest

SCHEMES = ("models:/", "runs:/")
INSTALL = "pip install 'turnout[mlflow]'"
PROBE_TIMEOUT_S = 5.0
"""How long an HTTP tracking server has to answer before it is called unreachable (MLflow's
own client would retry for minutes)."""

_MODELS = re.compile(r"models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))")
_RUNS = re.compile(r"runs:/(?P<run_id>[^/]+)/(?P<path>.+)")


class MlflowImportError(BadRequest):
    """An MLflow URI that cannot be imported; the message says what to do about it."""


@dataclass(frozen=True)
class MlflowModel:
    """A downloaded MLflow model directory and the tags that say where it came from."""

    folder: Path
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Pinned:
    """What a URI names once resolved: an alias becomes the version it points at now, so
    the files downloaded are those of the version recorded in the tags."""

    download_uri: str
    run_id: str | None = None
    model_version: str | None = None


def is_mlflow_uri(value: str) -> bool:
    return value.startswith(SCHEMES)


@contextmanager
def downloaded(uri: str, *, flavor: str) -> Iterator[MlflowModel]:
    """The model `uri` names, in a temporary folder that lives as long as the context."""
    if flavor != "mlflow":
        raise MlflowImportError(f"{uri} is an MLflow model: register it with --flavor mlflow")
    if not (_MODELS.fullmatch(uri) or _RUNS.fullmatch(uri)):
        raise MlflowImportError(
            f"{uri} is not an MLflow URI turnout imports: use models:/NAME@ALIAS, "
            "models:/NAME/VERSION or runs:/RUN_ID/PATH"
        )
    mlflow = _mlflow()
    tracking_uri = _tracking_uri()
    with tempfile.TemporaryDirectory(prefix="turnout-mlflow-") as scratch:
        yield _download(mlflow, uri, tracking_uri, Path(scratch))


def _mlflow() -> ModuleType:
    try:
        importlib.import_module("mlflow.artifacts")
        return importlib.import_module("mlflow")
    except ImportError as exc:
        raise MlflowImportError(f"importing from MLflow needs mlflow: {INSTALL}") from exc


def _tracking_uri() -> str:
    """MLFLOW_TRACKING_URI, required: MLflow's default would create a database in the
    current folder and report that the model does not exist."""
    tracking_uri = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if not tracking_uri:
        raise MlflowImportError(
            "set MLFLOW_TRACKING_URI to the MLflow tracking server that holds the model "
            "(e.g. http://127.0.0.1:5000)"
        )
    if tracking_uri.startswith(("http://", "https://")):
        try:
            httpx.get(tracking_uri.rstrip("/") + "/health", timeout=PROBE_TIMEOUT_S)
        except (httpx.TransportError, httpx.InvalidURL) as exc:
            raise MlflowImportError(
                redact.text(
                    f"cannot reach the MLflow tracking server at {tracking_uri} "
                    f"(MLFLOW_TRACKING_URI): {exc}"
                )
            ) from None
    return tracking_uri


def _download(mlflow: ModuleType, uri: str, tracking_uri: str, into: Path) -> MlflowModel:
    errors = importlib.import_module("mlflow.exceptions")
    try:
        client = mlflow.MlflowClient(tracking_uri=tracking_uri)
        pinned = _pin(client, uri)
        folder = mlflow.artifacts.download_artifacts(
            artifact_uri=pinned.download_uri, dst_path=str(into), tracking_uri=tracking_uri
        )
    except (errors.MlflowException, OSError) as exc:
        message = getattr(exc, "message", None) or str(exc)
        raise MlflowImportError(
            redact.text(f"cannot resolve {uri} through MLflow at {tracking_uri}: {message}")
        ) from None
    return MlflowModel(Path(folder), _tags(uri, pinned, Path(folder)))


def _pin(client: Any, uri: str) -> _Pinned:
    if match := _MODELS.fullmatch(uri):
        name, alias, version = match["name"], match["alias"], match["version"]
        found = (
            client.get_model_version_by_alias(name, alias)
            if alias
            else client.get_model_version(name, version)
        )
        return _Pinned(f"models:/{name}/{found.version}", found.run_id, str(found.version))
    run_id = uri.removeprefix("runs:/").split("/", 1)[0]  # the only other form accepted
    return _Pinned(uri, client.get_run(run_id).info.run_id)


def _tags(uri: str, pinned: _Pinned, folder: Path) -> dict[str, str]:
    """Provenance: the URI as given, the run and the registry version it resolved to, and
    the MLflow version that wrote the model (from its MLmodel file)."""
    meta = _mlmodel(uri, folder)
    values = {
        "mlflow.source": uri,
        "mlflow.run_id": pinned.run_id or meta.get("run_id"),
        "mlflow.model_version": pinned.model_version,
        "mlflow.model_id": meta.get("model_id"),
        "mlflow.version": meta.get("mlflow_version"),
    }
    return {key: str(value) for key, value in values.items() if value}


def _mlmodel(uri: str, folder: Path) -> dict[str, Any]:
    try:
        meta = yamltext.load((folder / "MLmodel").read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        raise MlflowImportError(
            f"{uri} is not an MLflow model (no readable MLmodel file)"
        ) from None
    return meta if isinstance(meta, dict) else {}
