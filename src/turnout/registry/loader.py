"""Load a registered version from the artifact store, verified, without touching the DB.

Runner processes use this with the version's record handed to them: they hold no database
credentials, only read access to the artifacts they are asked to load.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from turnout.errors import PolicyRefused
from turnout.registry.flavors import get_flavor
from turnout.registry.servable import Servable, frame
from turnout.registry.signature import Signature
from turnout.store.artifacts import ArtifactStore, safe_relative_path
from turnout.store.records import VersionRecord


class Loader:
    def __init__(self, artifacts: ArtifactStore, *, work_dir: Path, allow_pickle: bool) -> None:
        self.artifacts = artifacts
        self.work_dir = work_dir
        self.allow_pickle = allow_pickle

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
        with self.materialized(record) as path:
            return load_files(record, path, allow_pickle=self.allow_pickle)


def load_files(record: VersionRecord, path: Path, *, allow_pickle: bool) -> Servable:
    """Load a version from its files, already fetched and verified (a runner gets them this
    way: it has no access to the artifact store)."""
    flavor = get_flavor(record.flavor)
    if not allow_pickle and flavor.uses_pickle(path):
        raise PolicyRefused(f"{record.ref} is pickle-based and pickle is disallowed")
    model = flavor.load(path)
    signature = Signature.from_dict(record.signature)
    if signature.named and signature.example:
        rows = np.array(signature.example, dtype=np.float64 if signature.numeric else object)
        model.prefer_arrays(frame(rows, signature))
    return Servable(record, signature, model)
