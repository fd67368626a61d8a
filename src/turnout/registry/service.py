"""Register versions atomically and load them back, verified, for serving."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from turnout.errors import BadRequest, PolicyRefused
from turnout.registry.baseline import baseline, feature_stats, read_table
from turnout.registry.flavors import LoadedModel, get_flavor
from turnout.registry.inference import feature_frame, infer_signature
from turnout.registry.names import check_name
from turnout.registry.pipelines import PipelineRef, check_stored, store_pipeline
from turnout.registry.servable import Servable, frame
from turnout.registry.signature import Signature
from turnout.store import metadata as md
from turnout.store.artifacts import ArtifactStore, safe_relative_path
from turnout.store.db import Database
from turnout.store.records import Artifact, ModelRecord, StoredFile, VersionRecord
from turnout.types import JSON

log = logging.getLogger("turnout.registry")

PREDICTION_SAMPLE_ROWS = 10_000
"""Training rows the new model predicts on to record its prediction baseline."""


@dataclass(frozen=True, kw_only=True)
class NewVersion:
    """Everything a user says when registering a version."""

    model: str
    source: Path
    flavor: str
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    description: str = ""
    training_data: Path | None = None
    target: str | None = None
    parent_version: int | None = None
    lineage: dict[str, JSON] = field(default_factory=dict)
    pipeline: PipelineRef | dict[str, JSON] | None = None
    """The training pipeline (for retraining): what the user named, or a stored record
    carried over from the parent version."""
    actor: str = "local"


class Registry:
    def __init__(
        self, db: Database, artifacts: ArtifactStore, *, work_dir: Path, allow_pickle: bool
    ) -> None:
        self.db = db
        self.artifacts = artifacts
        self.work_dir = work_dir
        self.allow_pickle = allow_pickle

    # -- registration -----------------------------------------------------------------

    def register(self, new: NewVersion) -> VersionRecord:
        """Check, load and describe the model, store its files, then insert the version.

        Blobs are written before the DB row and are content-addressed, so a crash at any
        point leaves either a complete version or none (plus unreferenced blobs).
        """
        check_name(new.model, "model")
        source = new.source
        if not source.exists():
            raise BadRequest(f"{source} does not exist")
        flavor = get_flavor(new.flavor)
        if not self.allow_pickle and flavor.uses_pickle(source):
            raise PolicyRefused(
                f"{source.name} is pickle-based and this server refuses pickle artifacts "
                "(TURNOUT_ALLOW_PICKLE=false); use skops, ONNX or a native format"
            )
        model = flavor.load(source)
        facts = model.facts()
        sample = features = None
        training: dict[str, JSON] | None = None
        if new.training_data is not None:
            sample = read_table(new.training_data)
            features = feature_frame(sample, facts, new.target)
        signature = infer_signature(model, facts, features)
        if sample is not None and features is not None and new.training_data is not None:
            training = baseline(sample, list(features.columns), new.target)
            classifier = facts.classes is not None or signature.classes is not None
            outputs = prediction_stats(model, signature, features, classifier=classifier)
            if outputs is not None:
                training["prediction_stats"] = outputs
            sha, size = self.artifacts.put(new.training_data)
            training["file"] = {"name": new.training_data.name, "sha256": sha, "size": size}
        pipeline = None
        if isinstance(new.pipeline, PipelineRef):
            pipeline = store_pipeline(new.pipeline, self.artifacts)
        elif new.pipeline is not None:
            pipeline = check_stored(new.pipeline)
        artifact = self._store_files(source)
        self._check_parent(new)
        values: dict[str, JSON] = {
            "flavor": flavor.name,
            "description": new.description,
            "artifact": artifact.to_dict(),
            "signature": signature.to_dict(),
            "metrics": {k: float(v) for k, v in new.metrics.items()},
            "params": {k: str(v) for k, v in new.params.items()},
            "tags": {k: str(v) for k, v in new.tags.items()},
            "training": training,
            "parent_version": new.parent_version,
            "lineage": new.lineage,
            "pipeline": pipeline,
            "created_by": new.actor,
        }
        return self._insert(new.model, values, actor=new.actor)

    def _insert(self, name: str, values: dict[str, JSON], *, actor: str) -> VersionRecord:
        with self.db.write() as conn:
            model = md.lock_or_create_model(conn, name)
            number = md.next_version_number(conn, model)
            record = md.insert_version(conn, model, number, values)
            detail = {"flavor": values["flavor"]}
            md.audit(conn, actor=actor, action="version.register", target=record.ref, detail=detail)
            return record

    def _check_parent(self, new: NewVersion) -> None:
        if new.parent_version is None:
            return
        with self.db.read() as conn:
            md.get_version(conn, new.model, new.parent_version)

    def _store_files(self, source: Path) -> Artifact:
        if source.is_file():
            sha, size = self.artifacts.put(source)
            return Artifact("file", (StoredFile(source.name, sha, size),))
        files = []
        for path in sorted(source.rglob("*")):
            if path.is_symlink():
                raise BadRequest(f"{path.relative_to(source)} is a symlink; artifacts hold files")
            if path.is_file():
                relative = safe_relative_path(path.relative_to(source).as_posix())
                sha, size = self.artifacts.put(path)
                files.append(StoredFile(relative, sha, size))
        if not files:
            raise BadRequest(f"{source} holds no files")
        return Artifact("dir", tuple(files))

    # -- reads --------------------------------------------------------------------------

    def get_version(self, model: str, version: int) -> VersionRecord:
        with self.db.read() as conn:
            return md.get_version(conn, model, version)

    def latest_version(self, model: str) -> VersionRecord:
        versions = self.list_versions(model)
        if not versions:
            raise BadRequest(f"model {model!r} has no versions")
        return versions[-1]

    def list_versions(self, model: str) -> list[VersionRecord]:
        with self.db.read() as conn:
            md.get_model(conn, model)
            return md.list_versions(conn, model)

    def list_models(self) -> list[tuple[ModelRecord, int, int | None]]:
        with self.db.read() as conn:
            return md.list_models(conn)

    def get_model(self, name: str) -> ModelRecord:
        with self.db.read() as conn:
            return md.get_model(conn, name)

    def lineage(self, model: str, version: int) -> list[VersionRecord]:
        """The version and its ancestors, newest first."""
        chain = [self.get_version(model, version)]
        while chain[-1].parent_version is not None and len(chain) < 1000:
            chain.append(self.get_version(model, chain[-1].parent_version))
        return chain

    # -- loading ------------------------------------------------------------------------

    def verify(self, record: VersionRecord) -> None:
        """Check that every file of the version is present and intact."""
        for stored in record.artifact.files:
            self.artifacts.verify(stored.sha256)

    @contextmanager
    def materialized(self, record: VersionRecord) -> Iterator[Path]:
        """The version's files in a private folder, each verified against its sha256."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        folder = Path(
            tempfile.mkdtemp(prefix=f"{record.model}-{record.version}-", dir=self.work_dir)
        )
        try:
            for stored in record.artifact.files:
                target = folder / "files" / safe_relative_path(stored.path)
                self.artifacts.fetch(stored.sha256, target)
            root = folder / "files"
            yield root / record.artifact.files[0].path if record.artifact.kind == "file" else root
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def load(self, record: VersionRecord) -> Servable:
        """Load a version for serving; refuses tampered files and forbidden pickles."""
        flavor = get_flavor(record.flavor)
        with self.materialized(record) as path:
            if not self.allow_pickle and flavor.uses_pickle(path):
                raise PolicyRefused(f"{record.ref} is pickle-based and pickle is disallowed")
            model = flavor.load(path)
        signature = Signature.from_dict(record.signature)
        if signature.named and signature.example:
            rows = np.array(signature.example, dtype=np.float64 if signature.numeric else object)
            model.prefer_arrays(frame(rows, signature))
        return Servable(record, signature, model)


def prediction_stats(
    model: LoadedModel, signature: Signature, features: pd.DataFrame, *, classifier: bool
) -> dict[str, JSON] | None:
    """Statistics of the model's own predictions on (a seeded sample of) its training rows,
    the baseline for prediction drift; None when the model cannot predict on them.

    Class labels are summarised as categories even when they are integers.
    """
    if len(features) > PREDICTION_SAMPLE_ROWS:
        features = features.sample(n=PREDICTION_SAMPLE_ROWS, random_state=0)
    try:
        if signature.numeric:
            rows = features.to_numpy(dtype=np.float64)
        else:
            rows = features.astype(object).where(pd.notna(features), None).to_numpy()
        inputs = frame(rows, signature) if signature.named and model.wants_frame else rows
        values = np.asarray(model.predict(inputs).values)
    except Exception as exc:  # user models may raise anything
        log.warning("no prediction baseline: the model failed on its training rows: %s", exc)
        return None
    if values.ndim != 1 or len(values) != len(features):
        log.warning("no prediction baseline: predictions of shape %s", values.shape)
        return None
    return feature_stats(pd.Series(values), categorical=classifier)


def scratch_dir(base: Path) -> Path:
    """A fresh private folder for an upload being unpacked."""
    base.mkdir(parents=True, exist_ok=True)
    path = base / f"upload-{os.getpid()}-{uuid.uuid4().hex}"
    path.mkdir(mode=0o700)
    return path
