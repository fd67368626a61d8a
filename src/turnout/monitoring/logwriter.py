"""The prediction log's writer process: takes a worker's batches (Arrow IPC over a pipe),
encodes payloads, sorts, compresses and writes the Parquet segments, and compacts and
expires them, so that none of this CPU work competes with the worker that serves requests.

One writer process per gateway worker, started and supervised by its `PredictionLogger`.
Framing on stdin/stdout: a 4-byte big-endian length, then a JSON header; a `write` header
(`{"op": "write", "parts": n}`) is followed by n such frames of Arrow IPC stream bytes, which
become one segment. Every request gets one JSON reply.

    python -m turnout.monitoring.logwriter ROOT WRITER RETENTION_DAYS COMPACT_INTERVAL_S \
        [REMOTE_URI ENDPOINT_URL]

With a REMOTE_URI (the log shared on an object store) it also pushes the files to the store
from a thread of its own, and expires the store's old days (see `remote`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import orjson
import pyarrow as pa

from turnout import framing
from turnout.monitoring import compaction, segments
from turnout.monitoring.encoding import finalize
from turnout.monitoring.layout import KINDS, PREDICTIONS
from turnout.monitoring.remote import Pusher, RemoteLog, open_remote_log

log = logging.getLogger("turnout.monitoring")

MAX_FRAME = 1 << 31
"""A flush's table, at most (the buffer bounds it well below)."""
_RECENT_DAYS = 2
NICENESS = 10
REPLY_TIMEOUT_S = 120.0


def _send(out: IO[bytes], *frames: bytes) -> None:
    framing.write_frames(out, *frames)


def _receive(source: IO[bytes]) -> bytes:
    body = framing.read_frame(source.read, limit=MAX_FRAME)
    if body is None:
        raise EOFError("the other end closed the pipe")
    return body


# -- the child ----------------------------------------------------------------------------


def serve(
    root: Path,
    writer: str,
    retention_days: int,
    compact_interval_s: float,
    remote: RemoteLog | None = None,
) -> None:
    """Write what the worker sends until it says `close` (or goes away)."""

    with contextlib.suppress(OSError):  # serving comes first; the log can wait a moment
        os.nice(NICENESS)
    pusher = Pusher(remote) if remote is not None else None
    try:
        _serve(root, writer, retention_days, compact_interval_s, remote, pusher)
    finally:
        if pusher is not None:
            pusher.close()


def _serve(
    root: Path,
    writer: str,
    retention_days: int,
    compact_interval_s: float,
    remote: RemoteLog | None,
    pusher: Pusher | None,
) -> None:
    source, out = sys.stdin.buffer, sys.stdout.buffer
    next_maintenance = time.monotonic()
    since: datetime | None = None
    while True:
        wait = max(0.0, next_maintenance - time.monotonic())
        ready, _, _ = select.select([source], [], [], wait)
        if not ready:
            _maintain(root, writer, retention_days, close=False, since=since, remote=remote)
            if pusher is not None:
                pusher.poke()
            since = datetime.now(UTC) - timedelta(days=_RECENT_DAYS)
            next_maintenance = time.monotonic() + compact_interval_s
            continue
        try:
            header = orjson.loads(_receive(source))
        except EOFError:  # the worker died: its batches in flight are its to count
            _maintain(root, writer, retention_days, close=True, remote=remote)
            return
        if header.get("op") == "close":
            _maintain(root, writer, retention_days, close=True, remote=remote)
            if pusher is not None:
                pusher.close()  # the last push, before the worker hears the log is closed
            _send(out, orjson.dumps({"ok": True}))
            return
        payloads = [_receive(source) for _ in range(int(header.get("parts", 1)))]
        try:
            parts = [finalize(pa.ipc.open_stream(payload).read_all()) for payload in payloads]
            del payloads
            table = pa.concat_tables(parts)
            segments.write_segment(root, PREDICTIONS, writer, table)
            reply: dict[str, Any] = {"ok": True, "rows": table.num_rows}
            if pusher is not None:
                pusher.poke()
        except Exception as exc:  # reported to the worker, which keeps the rows and retries
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        _send(out, orjson.dumps(reply))


def _maintain(
    root: Path,
    writer: str,
    retention_days: int,
    *,
    close: bool,
    since: datetime | None = None,
    remote: RemoteLog | None = None,
) -> None:
    now = datetime.now(UTC)
    try:
        compaction.compact_writer(root, writer, now=now, close=close, since=since, kinds=KINDS)
        compaction.expire(root, retention_days, now=now)
        if remote is not None:
            remote.expire(retention_days, now=now)
    except Exception:
        log.warning("prediction log compaction failed", exc_info=True)


# -- the worker's side ----------------------------------------------------------------------


class WriterProcess:
    """The worker's handle on its writer process; started on first use, restarted after a
    crash. Calls come from the logger's one writer thread (and close), never concurrently."""

    def __init__(
        self,
        root: Path,
        writer: str,
        *,
        retention_days: int,
        compact_interval_s: float,
        remote: RemoteLog | None = None,
    ) -> None:
        self.args = [str(root), writer, str(retention_days), str(compact_interval_s)]
        if remote is not None:
            self.args += [remote.uri, remote.endpoint_url or ""]
        self._process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    def _started(self) -> subprocess.Popen[bytes]:
        process = self._process
        if process is not None and process.poll() is not None:
            _release(process)
        if process is None or process.poll() is not None:
            process = self._process = subprocess.Popen(
                [sys.executable, "-m", "turnout.monitoring.logwriter", *self.args],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                # the worker decides when its writer ends (it says `close`, or its pipe closes
                # when it dies): a signal to the worker's process group (Ctrl-C, a supervisor's
                # SIGTERM) must not stop the writer before the worker's last flush
                start_new_session=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        return process

    def _call(self, *frames: bytes) -> dict[str, Any]:
        process = self._started()
        assert process.stdin is not None
        assert process.stdout is not None
        try:
            _send(process.stdin, *frames)
            return dict(orjson.loads(_receive(process.stdout)))
        except (OSError, EOFError, ValueError) as exc:
            process.kill()
            _release(process)
            raise OSError(
                f"the prediction log writer process failed (exit code {process.returncode}): {exc}"
            ) from exc

    def start(self) -> None:
        """Start the process now (it takes a second to import), not on the first write."""
        with self._lock:
            self._started()

    def write(self, tables: Sequence[pa.Table]) -> None:
        """Hand one flush over (tables of any deployments, which may differ in how `inputs`
        is encoded) and wait until it is on disk as one segment; raises OSError if it is
        not."""
        frames = [_ipc(table) for table in tables]
        header = orjson.dumps({"op": "write", "parts": len(frames)})
        with self._lock:
            reply = self._call(header, *frames)
        if not reply.get("ok"):
            raise OSError(str(reply.get("error")))

    def close(self) -> None:
        """Let the writer compact this worker's files and exit."""
        with self._lock:
            process = self._process
            if process is None or process.poll() is not None:
                return
            try:
                self._call(orjson.dumps({"op": "close"}))
                process.wait(timeout=REPLY_TIMEOUT_S)
            except (OSError, subprocess.TimeoutExpired):
                process.kill()
            _release(process)


def _ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as stream:
        stream.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def _release(process: subprocess.Popen[bytes]) -> None:
    """Reap a finished (or killed) writer and close its pipes."""
    process.wait()
    for pipe in (process.stdin, process.stdout):
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()


def main() -> None:
    root, writer, retention_days, compact_interval_s = sys.argv[1:5]
    remote = None
    if len(sys.argv) > 5:  # checked by the worker at start; here an outage only delays pushes
        uri, endpoint_url = sys.argv[5:7]
        remote = open_remote_log(uri, Path(root), endpoint_url=endpoint_url or None, check=False)
    with contextlib.suppress(KeyboardInterrupt):
        serve(Path(root), writer, int(retention_days), float(compact_interval_s), remote)


if __name__ == "__main__":
    main()
