"""The per-worker prediction logger: answers are queued in memory on the request path and
written by one background thread, each flush as one Parquet segment holding every
deployment's rows, so logging never blocks a request.

Memory is bounded: when the queue is full, new answers are dropped and counted, never lost
silently. The same thread compacts this writer's closed hours and deletes expired days.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa

from turnout.monitoring import compaction, segments
from turnout.monitoring.encoding import LogEntry, fast_table, finalize, prediction_table
from turnout.monitoring.layout import KINDS, PREDICTIONS
from turnout.monitoring.logwriter import WriterProcess
from turnout.monitoring.remote import Pusher, RemoteLog

log = logging.getLogger("turnout.monitoring")

_WAKE_SHARE = 0.5
"""The writer is woken early once the queue is this full, so bursts are written, not dropped."""
_RECENT_DAYS = 2
"""Days a routine compaction looks at; the first and the last one of a logger look at all."""
_LOOP_CHUNK = 200
"""Entries encoded on the event loop in one step."""
_LOOP_WAIT_S = 60.0

__all__ = ["LogEntry", "PredictionLogger"]


def _by_deployment(batch: list[LogEntry]) -> dict[str, list[LogEntry]]:
    grouped: dict[str, list[LogEntry]] = {}
    for entry in batch:
        grouped.setdefault(entry.deployment, []).append(entry)
    return grouped


def _inside(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def _by_schema(tables: list[pa.Table]) -> list[pa.Table]:
    """The chunks of one flush joined into one table per schema: a few at most, since chunks
    differ only in how their `inputs` column is encoded (text, or lists of numbers)."""
    groups: list[list[pa.Table]] = []
    for table in tables:
        group = next((g for g in groups if g[0].schema.equals(table.schema)), None)
        if group is None:
            groups.append([table])
        else:
            group.append(table)
    return [pa.concat_tables(group) for group in groups]


def _joined(tables: Sequence[pa.Table]) -> pa.Table:
    """One table from the chunks of one flush; chunks encoded differently (a numeric and
    a text `inputs` column) are brought to PREDICTION_SCHEMA first."""
    if all(t.schema.equals(tables[0].schema) for t in tables):
        return pa.concat_tables(tables)
    return pa.concat_tables([finalize(t) for t in tables])


class PredictionLogger:
    """Buffers answers from the event loop and writes them from one daemon thread.

    Rows held in memory (queued or being written) never exceed `max_buffered_rows`. A write
    that fails keeps its rows for the next attempt and leaves the thread running.
    """

    def __init__(
        self,
        root: Path,
        writer: str,
        *,
        max_buffered_rows: int = 200_000,
        flush_interval_s: float = 1.0,
        retention_days: int = 30,
        compact_interval_s: float = 300.0,
        process: bool = False,
        remote: RemoteLog | None = None,
    ) -> None:
        """`process`: encode, compress and write in a separate writer process (which also
        compacts), so the serving process spends almost nothing on logging; otherwise all
        of it happens in this process's writer thread. `remote`: the object store the log
        is shared on; whoever writes the files pushes them there."""
        self.root = root
        self.writer = writer
        self.max_buffered_rows = max_buffered_rows
        self.flush_interval_s = flush_interval_s
        self.retention_days = retention_days
        self.compact_interval_s = compact_interval_s
        self._lock = threading.Lock()
        self._flushing = threading.Lock()
        self._wake = threading.Event()
        self._wake_rows = max(1, int(max_buffered_rows * _WAKE_SHARE))
        self._woken = False
        self._buffer: list[LogEntry] = []
        self._buffered = 0
        self._open = True
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._written = 0
        self._dropped = 0
        self._segments = 0
        self._last_error: str | None = None
        self._failing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._retry: list[pa.Table] = []
        """Tables whose write failed, written with the next flush (their rows stay counted)."""
        self._writer_process = (
            WriterProcess(
                root,
                writer,
                retention_days=retention_days,
                compact_interval_s=compact_interval_s,
                remote=remote,
            )
            if process
            else None
        )
        self.remote = remote if self._writer_process is None else None
        self._pusher: Pusher | None = None

    def record(self, entry: LogEntry) -> None:
        """Queue `entry` for writing; O(1), no I/O, never raises. Drops (and counts) it when
        the queue is full or the logger is closed."""
        n = len(entry.ids)
        with self._lock:
            if self._open and self._buffered + n <= self.max_buffered_rows:
                self._buffer.append(entry)
                self._buffered += n
                if self._buffered >= self._wake_rows and not self._woken:
                    self._woken = True
                    self._wake.set()
            else:
                self._dropped += n

    def start(self) -> None:
        """Start the background writer (once; a closed logger stays closed)."""
        with self._lock:
            if self._thread is not None or not self._open:
                return
            if self._writer_process is not None:
                self._writer_process.start()
            elif self.remote is not None:
                self._pusher = Pusher(self.remote)
            self._thread = threading.Thread(
                target=self._run, name=f"turnout-predlog-{self.writer}", daemon=True
            )
        self._thread.start()

    def flush(self) -> int:
        """Write everything queued now as one segment, whatever the deployments; returns rows
        written."""
        with self._flushing:
            encoded = self._take_encoded()
            return self._deliver(encoded) if encoded else 0

    def close(self) -> None:
        """Stop the writer, write everything queued and compact this writer's files (the
        worker's predictions and the actuals its API took), the current hour included. Rows
        that still cannot be written are counted as dropped. Safe to call more than once."""
        with self._lock:
            if not self._open:
                return
            self._open = False
            self._stopping = True
            thread = self._thread
        self._wake.set()
        if thread is not None:
            thread.join()
        self.flush()
        with self._lock:
            if self._buffered:
                log.warning("prediction log: %d rows could not be written", self._buffered)
            self._dropped += self._buffered
            self._buffered = 0
            self._buffer = []
            self._retry = []
        if self._writer_process is not None:
            self._writer_process.close()  # it compacts this writer's files, then exits
        else:
            self._maintain(close=True)
        if self._pusher is not None:
            self._pusher.close()

    def stats(self) -> dict[str, int | str | None]:
        """Rows queued, written and dropped so far, segments written, and the last failure."""
        with self._lock:
            return {
                "buffered": self._buffered,
                "written": self._written,
                "dropped": self._dropped,
                "segments": self._segments,
                "last_error": self._last_error,
            }

    def _run(self) -> None:
        next_maintenance = time.monotonic()
        since: datetime | None = None
        while True:
            self._wake.wait(self.flush_interval_s)
            self._wake.clear()
            if self._stopping:
                return
            try:
                self.flush()
            except Exception as exc:  # the thread must outlive any failure
                self._failed("prediction log flush failed", exc)
            if self._writer_process is None and time.monotonic() >= next_maintenance:
                self._maintain(close=False, since=since)
                since = datetime.now(UTC) - timedelta(days=_RECENT_DAYS)
                next_maintenance = time.monotonic() + self.compact_interval_s

    def _maintain(self, *, close: bool, since: datetime | None = None) -> None:
        """Compact closed hours (every hour of predictions when closing) and expire old days."""
        now = datetime.now(UTC)
        # the worker's API writes actuals under the same writer name; when the worker closes
        # it takes no more requests, so its current hour of actuals is finished too
        finished = KINDS if close else ()
        try:
            compaction.compact_writer(
                self.root, self.writer, now=now, close=True, since=since, kinds=finished
            )
            compaction.compact_writer(
                self.root,
                self.writer,
                now=now,
                since=since,
                kinds=[kind for kind in KINDS if kind not in finished],
            )
            compaction.expire(self.root, self.retention_days, now=now)
            if self.remote is not None:
                self.remote.expire(self.retention_days, now=now)
        except Exception as exc:
            self._failed("prediction log compaction failed", exc)
        if self._pusher is not None:
            self._pusher.poke()

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Build the tables on `loop` (the worker's event loop), 200 entries at a
        time between requests, instead of in the writer thread. The work is the same, but
        two threads taking turns at the interpreter lock slow each other down several
        times over; the writer thread is left with I/O, which runs without the lock."""
        self._loop = loop

    def _take_encoded(self) -> list[pa.Table]:
        """Everything queued, as tables (on the event loop when attached)."""
        loop = self._loop
        if loop is not None and loop.is_running() and not _inside(loop):
            future = asyncio.run_coroutine_threadsafe(self._take_on_loop(), loop)
            try:
                return future.result(timeout=_LOOP_WAIT_S)
            except (TimeoutError, concurrent.futures.CancelledError, RuntimeError):
                if not future.cancel():  # it ran after all
                    return future.result()
        batch, retry = self._take()
        tables: list[pa.Table] = []
        self._encode(batch, tables)
        return retry + _by_schema(tables)

    async def _take_on_loop(self) -> list[pa.Table]:
        """Encode 200 entries at a time, letting waiting requests go between steps;
        entries are released as they are encoded, so freeing them is spread out too."""
        batch, retry = self._take()
        tables: list[pa.Table] = []
        while batch:
            chunk = batch[-_LOOP_CHUNK:]
            del batch[-_LOOP_CHUNK:]
            self._encode(chunk, tables)
            del chunk
            await asyncio.sleep(0)
        return retry + _by_schema(tables)

    def _take(self) -> tuple[list[LogEntry], list[pa.Table]]:
        with self._lock:
            batch, self._buffer = self._buffer, []
            retry, self._retry = self._retry, []
            self._woken = False
        return batch, retry

    def _encode(self, entries: list[LogEntry], into: list[pa.Table]) -> None:
        """One table per deployment (its entries share a signature, which the vectorized
        encoding needs); they are written together."""
        for deployment, group in _by_deployment(entries).items():
            table, _ = self._table(deployment, group)
            if table is not None and table.num_rows:
                into.append(table)

    def _deliver(self, encoded: list[pa.Table]) -> int:
        """Write the tables as one segment; if that fails, they are kept for the next flush."""
        parts = _by_schema(encoded)
        rows = sum(int(part.num_rows) for part in parts)
        try:
            if self._writer_process is not None:
                self._writer_process.write(parts)
            else:
                segments.write_segment(self.root, PREDICTIONS, self.writer, _joined(parts))
                if self._pusher is not None:
                    self._pusher.poke()
        except Exception as exc:
            self._failed("prediction log write failed", exc)
            with self._lock:
                self._retry[:0] = parts  # their rows were never uncounted
            return 0
        with self._lock:
            self._buffered -= rows
            self._written += rows
            self._segments += 1
        if self._failing:
            self._failing = False
            log.info("prediction log writes succeed again")
        return rows

    def _table(
        self, deployment: str, entries: list[LogEntry]
    ) -> tuple[pa.Table | None, list[LogEntry]]:
        """The entries' rows as one table; an entry that cannot be encoded is dropped alone."""
        try:
            encode = self._writer_process is None
            fast = fast_table(deployment, entries, encode=encode)
            return fast or prediction_table(deployment, entries), entries
        except Exception:
            pass
        good: list[LogEntry] = []
        for entry in entries:
            try:
                prediction_table(deployment, [entry])
                good.append(entry)
            except Exception as exc:
                self._failed(f"prediction log entry for {deployment!r} dropped", exc)
                with self._lock:
                    self._buffered -= len(entry.ids)
                    self._dropped += len(entry.ids)
        return (prediction_table(deployment, good) if good else None), good

    def _failed(self, what: str, exc: Exception) -> None:
        message = f"{what}: {type(exc).__name__}: {exc}"
        with self._lock:
            repeated = self._failing and message == self._last_error
            self._last_error = message
            self._failing = True
        if not repeated:
            log.warning("%s", message)
