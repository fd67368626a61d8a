"""Files handed to runners: a version's artifact (fetched from the store and verified) or a
registration's upload, copied into a folder that only the runner's user may read.

Runners never read the artifact store or the server's home themselves; when the server runs
as root they run as an unprivileged user that could not.
"""

from __future__ import annotations

import itertools
import os
import shutil
from pathlib import Path
from typing import Any

from turnout.store.artifacts import ArtifactStore, safe_relative_path


class Staging:
    def __init__(self, root: Path, artifacts: ArtifactStore, *, uid: int | None, gid: int | None):
        self.root = root
        self.artifacts = artifacts
        self.uid = uid
        self.gid = gid
        self._ids = itertools.count(1)
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._own(root)

    def folder(self, prefix: str) -> Path:
        """A fresh folder the runner's user owns (for its files or as its temp folder)."""
        path = self.root / f"{prefix}-{next(self._ids)}"
        path.mkdir(mode=0o700)
        self._own(path)
        return path

    def version(self, record: dict[str, Any]) -> Path:
        """The version's files, verified against their sha256; the path the flavor loads
        (the file, or the folder of files)."""
        folder = self.folder("v")
        files = record["artifact"]["files"]
        for stored in files:
            target = folder / safe_relative_path(str(stored["path"]))
            self.artifacts.fetch(str(stored["sha256"]), target)
        self._own_tree(folder)
        if record["artifact"]["kind"] == "file":
            return folder / str(files[0]["path"])
        return folder

    def copy(self, source: Path) -> Path:
        """A registration's upload (a file or a folder), copied for the check's runner."""
        folder = self.folder("u")
        target = folder / source.name
        if source.is_dir():
            shutil.copytree(source, target, symlinks=False)
        else:
            shutil.copyfile(source, target)
        self._own_tree(folder)
        return target

    def remove(self, path: Path) -> None:
        """Drop what was staged (the folder under the staging root that holds `path`)."""
        relative = path.relative_to(self.root)
        shutil.rmtree(self.root / relative.parts[0], ignore_errors=True)

    def _own(self, path: Path) -> None:
        if self.uid is not None:
            os.chown(path, self.uid, self.gid if self.gid is not None else self.uid)

    def _own_tree(self, folder: Path) -> None:
        if self.uid is None:
            return
        self._own(folder)
        for path in folder.rglob("*"):
            os.chown(
                path,
                self.uid,
                self.gid if self.gid is not None else self.uid,
                follow_symlinks=False,
            )
