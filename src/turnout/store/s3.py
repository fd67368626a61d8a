"""The artifact store on S3 or an S3-compatible service (MinIO, Ceph, R2, ...).

Blobs live under `s3://BUCKET/PREFIX/sha256/ab/<sha256>`, addressed by content as in the
local store. An object appears whole or not at all (a single PUT, or a multipart upload that
is completed only once every part is in), and the metadata DB names a blob only after its
upload returned, so nothing ever refers to a half-written object.

Every node keeps a read-through cache of the blobs it fetched, bounded in bytes (least
recently used go first). A blob is hashed on the way into the cache and again on every read
from it, so a corrupted object or cache file is refused, never served.

Credentials come from boto3's usual chain (environment, shared files, instance roles) and
are never logged; `TURNOUT_S3_ENDPOINT_URL` points at a service other than AWS.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from turnout.errors import ArtifactCorrupted, BadRequest, NotFound, StoreUnavailable
from turnout.store.artifacts import check_sha, copy_hashing, hash_file

MISSING = {"404", "NoSuchKey", "NotFound"}


class S3ArtifactStore:
    def __init__(
        self, client: Any, bucket: str, prefix: str, *, cache: Path, cache_bytes: int, where: str
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.cache = cache
        self.cache_bytes = cache_bytes
        self.where = where
        """The store as errors name it: its URI and endpoint, never credentials."""
        self.cache.mkdir(parents=True, exist_ok=True)

    # -- names -------------------------------------------------------------------------------

    def _key(self, sha256: str) -> str:
        check_sha(sha256)
        key = f"sha256/{sha256[:2]}/{sha256}"
        return f"{self.prefix}/{key}" if self.prefix else key

    def _cached(self, sha256: str) -> Path:
        return self.cache / sha256[:2] / sha256

    # -- the store ---------------------------------------------------------------------------

    def put(self, source: Path) -> tuple[str, int]:
        sha256, size = hash_file(source)
        if not self.exists(sha256):
            with self._errors(f"storing blob {sha256}"):
                self.client.upload_file(str(source), self.bucket, self._key(sha256))
            stored = self._head(sha256)
            if stored is None or int(stored["ContentLength"]) != size:
                raise StoreUnavailable(
                    f"blob {sha256} did not arrive whole in {self.where}; nothing was registered"
                )
        return sha256, size

    def fetch(self, sha256: str, dest: Path) -> None:
        cached = self._cached(sha256)
        if not cached.is_file():
            self._download(sha256, cached)
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.with_name(dest.name + ".partial")
        with cached.open("rb") as src, partial.open("wb") as out:
            actual, _ = copy_hashing(src, out)
        if actual != sha256:  # the cache file went bad: drop it, the next fetch downloads
            partial.unlink(missing_ok=True)
            cached.unlink(missing_ok=True)
            raise ArtifactCorrupted(
                f"cached blob {sha256} is corrupted (content hashes to {actual}); "
                "it will not be loaded"
            )
        os.utime(cached)  # recently used: the last to leave the cache
        os.replace(partial, dest)

    def exists(self, sha256: str) -> bool:
        return self._head(sha256) is not None

    def verify(self, sha256: str) -> None:
        with tempfile.TemporaryDirectory(dir=self.cache) as tmp:
            self._download(sha256, Path(tmp) / "blob", keep=False)

    # -- helpers -----------------------------------------------------------------------------

    def _head(self, sha256: str) -> dict[str, Any] | None:
        key = self._key(sha256)
        try:
            with self._errors(f"looking up blob {sha256}"):
                return dict(self.client.head_object(Bucket=self.bucket, Key=key))
        except NotFound:
            return None

    def _download(self, sha256: str, target: Path, *, keep: bool = True) -> None:
        """Fetch a blob into `target`, refusing it unless its content hashes to `sha256`."""
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=target.parent, prefix=".fetch-")
        partial = Path(name)
        try:
            with os.fdopen(fd, "wb") as out, self._errors(f"fetching blob {sha256}"):
                self.client.download_fileobj(self.bucket, self._key(sha256), out)
            actual, size = hash_file(partial)
            if actual != sha256:
                raise ArtifactCorrupted(
                    f"artifact blob {sha256} in {self.where} is corrupted (content hashes to "
                    f"{actual}); it will not be loaded"
                )
            if keep:
                self._make_room(size)
                os.chmod(partial, 0o400)
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)

    def _make_room(self, size: int) -> None:
        """Evict the least recently used cache files until `size` more bytes fit."""
        files = []
        for path in self.cache.glob("*/[0-9a-f]*"):  # not downloads under way
            with contextlib.suppress(OSError):
                stat = path.stat()
                files.append((stat.st_mtime, stat.st_size, path))
        used = sum(s for _, s, _ in files)
        for _, file_size, path in sorted(files):
            if used + size <= self.cache_bytes:
                break
            path.unlink(missing_ok=True)
            used -= file_size

    def _errors(self, doing: str) -> Any:
        return s3_errors(self.where, doing)


@contextlib.contextmanager
def s3_errors(where: str, doing: str) -> Iterator[None]:
    """botocore's errors as turnout's: a missing object is NotFound, anything the service or
    the network did is StoreUnavailable (HTTP 503), naming the store (`where`), not the keys."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        if code in MISSING:
            raise NotFound(f"{doing}: not in {where}") from None
        raise StoreUnavailable(
            f"{doing} failed in {where}: {code} {error.get('Message', '')}".rstrip()
        ) from None
    except BotoCoreError as exc:
        raise StoreUnavailable(f"{doing} failed: {where} cannot be reached ({exc})") from None


def s3_client(endpoint_url: str | None, *, what: str) -> Any:
    """boto3's S3 client for AWS S3 (or `endpoint_url`), with credentials from boto3's usual
    chain, short connect timeouts and a few retries. `what` names the store needing it."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise BadRequest(f"{what} on s3:// needs boto3: pip install 'turnout[s3]'") from None
    config = Config(
        connect_timeout=5, read_timeout=60, retries={"max_attempts": 3, "mode": "standard"}
    )
    return boto3.client("s3", endpoint_url=endpoint_url or None, config=config)


def check_bucket(client: Any, bucket: str, where: str, doing: str) -> None:
    """Raise, naming `where`, unless `bucket` exists and answers."""
    try:
        with s3_errors(where, doing):
            client.head_bucket(Bucket=bucket)
    except NotFound:
        raise StoreUnavailable(f"bucket {bucket!r} does not exist at {where}") from None


def open_s3(
    uri: str, *, endpoint_url: str | None, cache: Path, cache_bytes: int
) -> S3ArtifactStore:
    """The store at `s3://bucket/prefix`, checked reachable now so a bad setting fails at start."""
    parsed = urlparse(uri)
    if not parsed.netloc:
        raise BadRequest(f"artifact store {uri!r} names no bucket; use s3://BUCKET/PREFIX")
    client = s3_client(endpoint_url, what="an artifact store")
    where = f"{uri} (endpoint {endpoint_url or 'AWS S3'})"
    store = S3ArtifactStore(
        client, parsed.netloc, parsed.path, cache=cache, cache_bytes=cache_bytes, where=where
    )
    check_bucket(client, parsed.netloc, where, "opening the artifact store")
    return store
