"""Register versions atomically and load them back, verified, for serving."""

from __future__ import annotations

import logging
import os
import uuid
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

from turnout.errors import BadRequest, PolicyRefused
from turnout.registry.describe import Inspection, Inspector, LocalInspector
from turnout.registry.flavors import get_flavor
from turnout.registry.loader import Loader
from turnout.registry.names import check_name
from turnout.registry.pipelines import PipelineRef, check_stored, store_pipeline
from turnout.registry.servable import Servable
from turnout.store import metadata as md
from turnout.store.artifacts import ArtifactStore, safe_relative_path
from turnout.store.db import Database
from turnout.store.records import Artifact, ModelRecord, StoredFile, VersionRecord
from turnout.types import JSON

log = logging.getLogger("turnout.registry")


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
        self,
        db: Database,
        artifacts: ArtifactStore,
        *,
        work_dir: Path,
        allow_pickle: bool,
        inspector: Inspector | None = None,
    ) -> None:
        self.db = db
        self.artifacts = artifacts
        self.allow_pickle = allow_pickle
        self.loader = Loader(artifacts, work_dir=work_dir, allow_pickle=allow_pickle)
        self.inspector: Inspector = inspector or LocalInspector()
        """Where registration runs the new version's code (a runner process on a server)."""

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
        described = self.inspector.describe(
            Inspection(
                flavor=flavor.name,
                source=source,
                training_data=new.training_data,
                target=new.target,
                allow_pickle=self.allow_pickle,
            )
        )
        training = described.training
        if training is not None and new.training_data is not None:
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
            "signature": described.signature,
            "memory_bytes": described.memory_bytes,
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

    def audit_failure(self, model: str, *, actor: str, detail: dict[str, JSON]) -> None:
        """Record a registration that was refused or failed, and who tried it. Never raises:
        the caller's own error is the one to report."""
        try:
            with self.db.write() as conn:
                md.audit(
                    conn,
                    actor=actor,
                    action="version.register.failed",
                    target=model[:200],
                    detail=detail,
                )
        except Exception:  # the store may be what failed
            log.exception("could not audit a failed registration of %r by %r", model, actor)

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

    @property
    def work_dir(self) -> Path:
        return self.loader.work_dir

    # -- loading ------------------------------------------------------------------------

    def verify(self, record: VersionRecord) -> None:
        """Check that every file of the version is present and intact."""
        for stored in record.artifact.files:
            self.artifacts.verify(stored.sha256)

    def materialized(self, record: VersionRecord) -> AbstractContextManager[Path]:
        """The version's files in a private folder, each verified against its sha256."""
        return self.loader.materialized(record)

    def load(self, record: VersionRecord) -> Servable:
        """Load a version here (thread runners, jobs); refuses tampered files and pickles."""
        return self.loader.load(record)


def scratch_dir(base: Path) -> Path:
    """A fresh private folder for an upload being unpacked."""
    base.mkdir(parents=True, exist_ok=True)
    path = base / f"upload-{os.getpid()}-{uuid.uuid4().hex}"
    path.mkdir(mode=0o700)
    return path
