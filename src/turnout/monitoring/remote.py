"""The prediction log on an object store (S3 or S3-compatible), shared by every node.

Each node keeps the log in a folder of its own (the `<log root>` of `layout`), exactly as on
one machine: its writers write and compact their files there, and its readers query the files
there with DuckDB, fast and whatever the network does. This module keeps that folder and the
object store in step, under the same names (`<prefix>/<kind>/day=<YYYY-MM-DD>/<file>`):

- **push**: the node's own files go up; a file of its own that compaction or retention deleted
  is deleted remotely. An object appears whole or not at all (one PUT), so no node ever reads
  half a file.
- **pull**: other nodes' files come down (under a hidden name, then renamed into place); a
  file gone remotely (compacted or expired by its writer) is deleted here.

No two nodes ever write the same object: a file is named after its writer, and only its
writer compacts it (see `compaction`). A compacted file goes up before the segments it
replaced are deleted, and readers skip the segments a compacted file of the same writer and
hour holds (`segments.live_files`), so a reader never counts a row twice nor misses one while
another node compacts.

While the object store cannot be reached nothing is lost: the node's files wait in its folder
and go up with the first push that succeeds, and readers answer from the files they have.

Which files are the node's own and which came from others is kept in `<log root>/.remote/`:
`pushed.json` (own files in the store, with the size and mtime pushed) and `pulled.json`
(others' files, with their ETag), each replaced atomically and changed only under its own
lock, so every process of the node (gateway workers, log writers, jobs) may push or pull.
A pull records a file before renaming it into place, and a push lists the folder before it
reads that record, so a pulled file is never taken for an own file and pushed back.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from turnout.errors import BadRequest, NotFound, StoreUnavailable
from turnout.monitoring.layout import DAY_PREFIX, KINDS, kind_dir
from turnout.monitoring.segments import parse_name, subdirs
from turnout.store.s3 import check_bucket, s3_client, s3_errors

if TYPE_CHECKING:
    from turnout.settings import Settings

log = logging.getLogger("turnout.monitoring")

STATE = ".remote"
"""The folder of the sync state in the log root (hidden: readers skip it)."""
KEY = re.compile(
    r"(?P<kind>predictions|actuals)/day=(?P<day>[0-9]{4}-[0-9]{2}-[0-9]{2})/"
    r"(?P<name>[A-Za-z0-9_][A-Za-z0-9_.-]*\.parquet)"
)
"""The only keys a pull writes into the folder: anything else in the store (a stray object,
a key with `..` or slashes in the name) is left alone, never downloaded."""
REFRESH_S = 1.0
"""How stale a reader's view of other nodes' files may be: it pulls at most this often."""
RETRY_S = 2.0
"""A push that failed is tried again after this long, then twice as long each time, up to
the pusher's interval."""
WARN_EVERY_S = 60.0
"""A failing store is logged at most this often per process (its failures are counted)."""

Signature = list[int]
"""An own file as pushed: [size, mtime in ns]."""


class CorruptedLogFile(Exception):
    """An object under the log's keys that is not a readable Parquet file."""


class RemoteLog:
    """A node's log folder `root` and the shared log under `s3://bucket/prefix`."""

    def __init__(
        self, client: Any, bucket: str, prefix: str, root: Path, *, endpoint_url: str | None
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.root = root
        self.uri = f"s3://{bucket}/{self.prefix}".rstrip("/")
        self.endpoint_url = endpoint_url
        """Where the store is (a child process opens its own client from these)."""
        self.where = f"{self.uri} (endpoint {endpoint_url or 'AWS S3'})"
        """The store as errors name it: its URI and endpoint, never credentials."""
        self.state = root / STATE
        self.failures = 0
        """Pushes and pulls that failed in this process (the store was unreachable)."""
        self.last_error: str | None = None
        self._refreshed = (float("-inf"), date.max)
        """When this process last pulled, and from which day."""
        self._refreshing = threading.Lock()
        self._warned = float("-inf")
        self._refused: dict[str, str] = {}
        """Objects that were not Parquet, with their ETag: not fetched again until they change."""

    # -- names -------------------------------------------------------------------------------

    def _key(self, relative: str) -> str:
        return f"{self.prefix}/{relative}" if self.prefix else relative

    def _relative(self, key: str) -> str:
        return key[len(self.prefix) + 1 :] if self.prefix else key

    # -- push ------------------------------------------------------------------------------

    def push(self, *, wait: bool = True) -> int:
        """Upload the node's new or changed files and delete remotely those it deleted here.
        Returns how many objects changed. `wait=False`: return 0 at once if another process
        of the node is pushing (its push takes these files too). Raises StoreUnavailable
        when the store fails; what was not pushed is pushed by the next call."""
        with self._locked("push", wait=wait) as held:
            if not held:
                return 0
            here = self._local_files()  # listed before `pulled` is read (see the module doc)
            pulled = self._read("pulled").get("files", {})
            pushed = self._read("pushed").get("files", {})
            own = {relative: found for relative, found in here.items() if relative not in pulled}
            changed = 0
            try:
                for relative, (path, signature) in own.items():
                    if pushed.get(relative) == signature:
                        continue
                    try:
                        with s3_errors(self.where, "pushing the prediction log"):
                            self.client.upload_file(str(path), self.bucket, self._key(relative))
                    except FileNotFoundError:  # compacted meanwhile: the next push deletes it
                        continue
                    pushed[relative] = signature
                    changed += 1
                for relative in [r for r in pushed if r not in own]:
                    with s3_errors(self.where, "pushing the prediction log"):
                        self.client.delete_object(Bucket=self.bucket, Key=self._key(relative))
                    del pushed[relative]
                    changed += 1
            finally:
                if changed:
                    self._write("pushed", {"files": pushed})
            return changed

    def _local_files(self) -> dict[str, tuple[Path, Signature]]:
        """Every log file in the folder, own or pulled, by relative name."""
        files: dict[str, tuple[Path, Signature]] = {}
        for kind in KINDS:
            for folder in subdirs(kind_dir(self.root, kind)):
                if not folder.name.startswith(DAY_PREFIX):
                    continue  # the earlier per-deployment layout stays on its node
                with contextlib.suppress(FileNotFoundError):
                    for entry in os.scandir(folder):
                        if parse_name(entry.name) is None:
                            continue
                        with contextlib.suppress(FileNotFoundError):
                            stat = entry.stat()
                            relative = f"{kind}/{folder.name}/{entry.name}"
                            files[relative] = (Path(entry.path), [stat.st_size, stat.st_mtime_ns])
        return files

    # -- pull ------------------------------------------------------------------------------

    def pull(self, *, retention_days: int | None = None, since: date = date.min) -> int:
        """Download other nodes' new or rewritten files of the days from `since` (and of the
        last `retention_days`), and delete those gone from the store. Returns how many files
        changed here. Raises StoreUnavailable when the store fails."""
        started = time.time()
        first = since if retention_days is None else max(since, _cutoff(retention_days))
        with self._locked("pull", wait=True):
            state = self._read("pulled")
            if float(state.get("at", 0.0)) >= started and state.get("first", "") <= f"{first}":
                return 0  # another process pulled these days meanwhile
            pulled: dict[str, str] = state.get("files", {})
            remote = self._list(first)
            pushed = self._read("pushed").get("files", {})  # after listing (module doc)
            changed = 0
            try:
                for relative, etag in remote.items():
                    if relative in pushed or etag in (
                        pulled.get(relative),
                        self._refused.get(relative),
                    ):
                        continue
                    path = self.root / relative
                    if relative not in pulled and path.exists():
                        continue  # an own file not pushed yet
                    if self._download(relative, etag, path, pulled):
                        changed += 1
                for relative in [r for r in pulled if r not in remote]:
                    day = KEY.fullmatch(relative)
                    if day is not None and date.fromisoformat(day["day"]) < first:
                        continue  # not listed; retention deletes it here
                    (self.root / relative).unlink(missing_ok=True)
                    del pulled[relative]
                    changed += 1
            finally:
                self._write("pulled", {"at": started, "first": f"{first}", "files": pulled})
            return changed

    def _list(self, first: date) -> dict[str, str]:
        """The store's log files from day `first` on, by relative name, with their ETags."""
        found: dict[str, str] = {}
        pages = self.client.get_paginator("list_objects_v2")
        for kind in KINDS:
            start = self._key(f"{kind}/{DAY_PREFIX}{first:%Y-%m-%d}") if first > date.min else ""
            with s3_errors(self.where, "listing the prediction log"):
                for page in pages.paginate(
                    Bucket=self.bucket, Prefix=self._key(f"{kind}/"), StartAfter=start
                ):
                    for item in page.get("Contents", []):
                        relative = self._relative(str(item["Key"]))
                        if KEY.fullmatch(relative) and parse_name(relative.rsplit("/", 1)[1]):
                            found[relative] = str(item.get("ETag", ""))
        return found

    def _download(self, relative: str, etag: str, path: Path, pulled: dict[str, str]) -> bool:
        """Fetch one file into place; False when its writer deleted it meanwhile."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=".pull-", suffix=".tmp")
        partial = Path(name)
        try:
            with os.fdopen(fd, "wb") as out, s3_errors(self.where, "pulling the prediction log"):
                self.client.download_fileobj(self.bucket, self._key(relative), out)
            try:
                pq.read_metadata(partial)
            except (pa.ArrowException, OSError) as exc:
                self._refused[relative] = etag
                self.failed(CorruptedLogFile(f"{relative} in {self.where} is not Parquet: {exc}"))
                return False
            os.chmod(partial, 0o600)
            pulled[relative] = etag  # recorded before it is visible (see the module doc)
            self._write("pulled", {"at": 0.0, "files": pulled})
            os.replace(partial, path)
            return True
        except NotFound:
            return False
        finally:
            partial.unlink(missing_ok=True)

    def refresh(
        self,
        *,
        retention_days: int | None = None,
        since: date = date.min,
        max_age_s: float = REFRESH_S,
    ) -> None:
        """Pull the days from `since`, unless this process pulled them less than `max_age_s`
        ago (a query over the last hour lists one or two days of the store, not all of
        them). Never raises: when the store fails, readers answer from the files already
        here (the failure is counted and logged)."""
        with self._refreshing:
            at, first = self._refreshed
            if time.monotonic() - at < max_age_s and first <= since:
                return
            try:
                self.pull(retention_days=retention_days, since=since)
            except StoreUnavailable as exc:
                self.failed(exc)
            self._refreshed = (time.monotonic(), since)

    def delete(self, path: Path) -> None:
        """Delete the log file `path` (in the root) here and in the store, whoever wrote it:
        a resumed batch job withdraws the rows an earlier run logged for a chunk."""
        relative = path.relative_to(self.root).as_posix()
        with self._locked("push", wait=True), self._locked("pull", wait=True):
            path.unlink(missing_ok=True)
            with s3_errors(self.where, "deleting from the prediction log"):
                self.client.delete_object(Bucket=self.bucket, Key=self._key(relative))
            for name in ("pushed", "pulled"):
                state = self._read(name)
                if state.get("files", {}).pop(relative, None) is not None:
                    self._write(name, state)

    # -- retention ----------------------------------------------------------------------------

    def expire(self, retention_days: int, *, now: datetime | None = None) -> int:
        """Delete the store's day folders older than `retention_days` (any node may: the rows
        are past keeping). Returns how many objects went."""
        cutoff = _cutoff(retention_days, now)
        removed = 0
        pages = self.client.get_paginator("list_objects_v2")
        for kind in KINDS:
            with s3_errors(self.where, "expiring the prediction log"):
                old: list[dict[str, str]] = []
                for page in pages.paginate(Bucket=self.bucket, Prefix=self._key(f"{kind}/")):
                    for item in page.get("Contents", []):
                        found = KEY.fullmatch(self._relative(str(item["Key"])))
                        if found is None or date.fromisoformat(found["day"]) >= cutoff:
                            continue
                        old.append({"Key": str(item["Key"])})
                for start in range(0, len(old), 1000):
                    self.client.delete_objects(
                        Bucket=self.bucket, Delete={"Objects": old[start : start + 1000]}
                    )
                removed += len(old)
        return removed

    def failed(self, exc: Exception) -> None:
        """Count a failed push or pull; log it now and then, not on every try."""
        self.failures += 1
        self.last_error = str(exc)
        if time.monotonic() - self._warned >= WARN_EVERY_S:
            self._warned = time.monotonic()
            log.warning("the shared prediction log is out of step (retrying): %s", exc)

    # -- state ---------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self, name: str, *, wait: bool) -> Iterator[bool]:
        self.state.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.state / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)  # closing releases the lock

    def _read(self, name: str) -> dict[str, Any]:
        try:
            data = orjson.loads((self.state / f"{name}.json").read_bytes())
        except FileNotFoundError:
            return {}
        except orjson.JSONDecodeError:
            log.warning("%s/%s.json is unreadable; it is rebuilt", self.state, name)
            return {}
        return data if isinstance(data, dict) else {}

    def _write(self, name: str, data: dict[str, Any]) -> None:
        target = self.state / f"{name}.json"
        temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        temporary.write_bytes(orjson.dumps(data))
        os.replace(temporary, target)


class Pusher:
    """Pushes a node's log files from a thread of its own, soon after each `poke` (a file was
    written) and every `interval_s` anyway, so a writer never waits on the network. While
    the store fails it retries on each poke and interval; `close` makes a last push."""

    def __init__(self, remote: RemoteLog, *, interval_s: float = 30.0) -> None:
        self.remote = remote
        self.interval_s = interval_s
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="turnout-log-push", daemon=True)
        self._thread.start()

    def poke(self) -> None:
        self._wake.set()

    def close(self, timeout_s: float = 30.0) -> None:
        """Stop the thread after one last push (waiting at most `timeout_s`)."""
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout_s)

    def _run(self) -> None:
        wait, retry = self.interval_s, RETRY_S
        while True:
            self._wake.wait(wait)
            self._wake.clear()
            try:
                self.remote.push()
                wait, retry = self.interval_s, RETRY_S
            except Exception as exc:  # the thread must outlive any failure
                self.remote.failed(exc)
                wait, retry = retry, min(self.interval_s, retry * 2)
            if self._stopping:
                return


def remote_log(settings: Settings, *, check: bool = True) -> RemoteLog | None:
    """The object store holding `settings`' prediction log, or None when it is a folder.
    `check`: make sure now that the bucket answers (at start: a bad setting stops the node)."""
    uri = settings.log_remote
    if uri is None:
        return None
    return open_remote_log(
        uri, settings.log_root, endpoint_url=settings.s3_endpoint_url, check=check
    )


def _cutoff(retention_days: int, now: datetime | None = None) -> date:
    """The first day still kept."""
    return ((now or datetime.now(UTC)).astimezone(UTC) - timedelta(days=retention_days)).date()


def open_remote_log(
    uri: str, root: Path, *, endpoint_url: str | None, check: bool = True
) -> RemoteLog:
    """The shared log at `s3://bucket/prefix` for the node folder `root`. `check`: make
    sure the bucket answers, so a bad setting fails at start, naming the endpoint."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise BadRequest(f"prediction log {uri!r} is not a folder or s3://BUCKET/PREFIX")
    client = s3_client(endpoint_url, what="a prediction log")
    remote = RemoteLog(client, parsed.netloc, parsed.path, root, endpoint_url=endpoint_url)
    if check:
        check_bucket(client, parsed.netloc, remote.where, "opening the prediction log")
    root.mkdir(parents=True, exist_ok=True)
    return remote
