"""The artifact store: immutable blobs addressed by sha256, verified on every read.

A backend implements `ArtifactStore`; `open_artifact_store` picks one by URI scheme.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import urlparse

from turnout.errors import ArtifactCorrupted, BadRequest, NotFound

SHA256 = re.compile(r"^[0-9a-f]{64}$")
CHUNK = 1 << 20


def check_sha(sha256: str) -> str:
    if not SHA256.match(sha256):
        raise BadRequest(f"not a sha256 digest: {sha256!r}")
    return sha256


def safe_relative_path(path: str) -> str:
    """A relative POSIX path inside a version, refusing anything that could escape it."""
    if not path or "\\" in path or "\x00" in path:
        raise BadRequest(f"invalid artifact path {path!r}")
    parts = path.split("/")
    if path.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise BadRequest(f"artifact path {path!r} must be relative and stay inside the artifact")
    return path


def hash_file(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def copy_hashing(src: BinaryIO, dst: BinaryIO) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    while chunk := src.read(CHUNK):
        digest.update(chunk)
        dst.write(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


class ArtifactStore(Protocol):
    """Content-addressed blob storage. Blobs never change once written."""

    def put(self, source: Path) -> tuple[str, int]:
        """Store a file; returns (sha256, size). Storing the same content twice is a no-op."""
        ...

    def fetch(self, sha256: str, dest: Path) -> None:
        """Write the blob to `dest`, raising ArtifactCorrupted if its content does not match."""
        ...

    def exists(self, sha256: str) -> bool: ...

    def verify(self, sha256: str) -> None:
        """Raise NotFound or ArtifactCorrupted unless the blob is present and intact."""
        ...


class LocalArtifactStore:
    """Blobs under `<root>/sha256/ab/abcdef...`, written to a temp file then renamed."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.blobs = self.root / "sha256"
        self.tmp = self.root / "tmp"
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)

    def _path(self, sha256: str) -> Path:
        check_sha(sha256)
        path = (self.blobs / sha256[:2] / sha256).resolve()
        if not path.is_relative_to(self.blobs):
            raise BadRequest(f"artifact {sha256!r} resolves outside the store")
        return path

    def put(self, source: Path) -> tuple[str, int]:
        fd, tmp_name = tempfile.mkstemp(dir=self.tmp, prefix="put-")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out, source.open("rb") as src:
                sha256, size = copy_hashing(src, out)
                out.flush()
                os.fsync(out.fileno())
            final = self._path(sha256)
            if final.exists():
                tmp.unlink()
            else:
                final.parent.mkdir(parents=True, exist_ok=True)
                os.chmod(tmp, 0o400)
                os.replace(tmp, final)
            return sha256, size
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def fetch(self, sha256: str, dest: Path) -> None:
        src_path = self._path(sha256)
        if not src_path.is_file():
            raise NotFound(f"artifact blob {sha256} is missing from the store")
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.with_name(dest.name + ".partial")
        with src_path.open("rb") as src, partial.open("wb") as out:
            actual, _ = copy_hashing(src, out)
        if actual != sha256:
            partial.unlink(missing_ok=True)
            raise ArtifactCorrupted(
                f"artifact blob {sha256} is corrupted (content hashes to {actual}); "
                "it will not be loaded"
            )
        os.replace(partial, dest)

    def exists(self, sha256: str) -> bool:
        return self._path(sha256).is_file()

    def verify(self, sha256: str) -> None:
        path = self._path(sha256)
        if not path.is_file():
            raise NotFound(f"artifact blob {sha256} is missing from the store")
        actual, _ = hash_file(path)
        if actual != sha256:
            raise ArtifactCorrupted(
                f"artifact blob {sha256} is corrupted (content hashes to {actual})"
            )


def local_path(uri: str) -> Path:
    """The folder a local location names (a path, or a `file://` URL)."""
    parsed = urlparse(uri)
    return Path(parsed.path if parsed.scheme == "file" else uri)


def _local(uri: str) -> ArtifactStore:
    return LocalArtifactStore(local_path(uri))


def _s3(uri: str) -> ArtifactStore:
    from turnout.settings import Settings
    from turnout.store.s3 import open_s3

    settings = Settings()
    return open_s3(
        uri,
        endpoint_url=settings.s3_endpoint_url,
        cache=settings.cache_dir / "artifacts",
        cache_bytes=settings.artifact_cache_mb << 20,
    )


BACKENDS: dict[str, Callable[[str], ArtifactStore]] = {"": _local, "file": _local, "s3": _s3}


def is_local(uri: str) -> bool:
    """Whether the store at `uri` is a folder on this machine."""
    scheme = urlparse(uri).scheme
    return len(scheme) <= 1 or scheme == "file"


def open_artifact_store(uri: str) -> ArtifactStore:
    scheme = urlparse(uri).scheme
    if len(scheme) == 1:  # a Windows drive letter, not a scheme
        scheme = ""
    try:
        backend = BACKENDS[scheme]
    except KeyError:
        known = ", ".join(s + "://" for s in BACKENDS if s) + " or a folder path"
        raise BadRequest(f"unsupported artifact store {uri!r}; use {known}") from None
    return backend(uri)
