"""Compaction and retention of the prediction log.

Each writer merges its own segments of a closed hour into one `<writer>-<HH>.compact.parquet`
with large row groups, so readers open a few files instead of thousands. Any writer may
delete days past the retention period.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from turnout.monitoring.layout import ACTUALS, KINDS, PREDICTIONS, SCHEMAS
from turnout.monitoring.segments import COMPACT_SUFFIX, parse_name

log = logging.getLogger("turnout.monitoring")

ROW_GROUP_ROWS = 128 * 1024
"""Rows per row group of a compacted file: large enough to scan fast, several per file so
engines can read one file in parallel."""
GRACE = timedelta(minutes=1)
"""An hour counts as closed this long after it ends, so a segment named in its last instant
and still being renamed into place is not missed."""
TOKEN_KEY = b"turnout.compaction"
"""Parquet metadata of a compacted file: a token naming the compaction that wrote it."""
_BATCH_ROWS = 64 * 1024
_SORT_KEYS = {PREDICTIONS: "ts", ACTUALS: "received_at"}


def compact_writer(
    root: Path,
    writer: str,
    *,
    now: datetime,
    close: bool = False,
    since: datetime | None = None,
    kinds: Sequence[str] = KINDS,
) -> int:
    """Merge `writer`'s segments of every closed hour (every hour when `close`: the writer
    will add no more) into the hour's compact file, then delete them. Days before `since`
    are not looked at. Returns the number of segments merged."""
    merged = 0
    for kind in kinds:
        for day in _day_dirs(root / kind, since):
            for hour, parts in sorted(_segments(day, writer).items()):
                if not (close or _closed(day.name, hour, now)):
                    continue
                try:
                    merged += compact_hour(day / f"{writer}-{hour}{COMPACT_SUFFIX}", parts, kind)
                except Exception as exc:  # one bad hour must not stop the others
                    log.warning("compacting %s hour %s failed: %s", day, hour, exc)
    return merged


def compact_hour(target: Path, parts: Sequence[Path], kind: str) -> int:
    """Fold `parts` into the compact file `target` (created, or rewritten with its earlier
    rows first), then delete them. Returns how many were merged.

    Before the merged file replaces `target`, a hidden journal records which segments it
    holds and its token; it is removed once those segments are gone. A compaction that was
    interrupted in between is finished by the next one: segments the journal lists are
    deleted if `target` carries the journal's token (they are in it), merged otherwise.
    """
    journal = journal_path(target)
    done = _journaled(journal, target)
    for part in parts:
        if part.name in done:
            part.unlink(missing_ok=True)
    fresh = sorted((part for part in parts if part.name not in done), key=lambda p: p.name)
    if fresh:
        token = uuid.uuid4().hex
        inputs = ([target] if target.exists() else []) + fresh
        merged = _write_merged(target, inputs, SCHEMAS[kind], token, _SORT_KEYS[kind])
        _write_text(journal, "\n".join([token, *(part.name for part in fresh)]))
        os.replace(merged, target)
        for part in fresh:
            part.unlink(missing_ok=True)
    journal.unlink(missing_ok=True)
    return len(fresh)


def journal_path(target: Path) -> Path:
    """Hidden (readers and `parse_name` skip names starting with a dot)."""
    return target.with_name(f".{target.name}.journal")


def expire(root: Path, retention_days: int, *, now: datetime) -> int:
    """Delete every day folder whose rows are all older than `retention_days`, for every
    deployment and kind. Returns the number of folders deleted; folders another process
    deletes at the same time are skipped."""
    cutoff = (now.astimezone(UTC) - timedelta(days=retention_days)).date()
    removed = 0
    for kind in KINDS:
        for deployment in _subdirs(root / kind):
            for day in _subdirs(deployment):
                when = _date(day.name)
                if when is not None and when < cutoff and _remove(day):
                    removed += 1
    return removed


def _day_dirs(kind_root: Path, since: datetime | None) -> Iterator[Path]:
    first = since.astimezone(UTC).date() if since else date.min
    for deployment in _subdirs(kind_root):
        for day in _subdirs(deployment):
            when = _date(day.name)
            if when is not None and when >= first:
                yield day


def _segments(day: Path, writer: str) -> dict[str, list[Path]]:
    """`writer`'s segments (not compacted files) in `day`, by hour."""
    hours: dict[str, list[Path]] = {}
    try:
        names = [entry.name for entry in os.scandir(day)]
    except FileNotFoundError:
        return hours
    for name in names:
        parsed = parse_name(name)
        if parsed is not None and parsed[0] == writer and not parsed[2]:
            hours.setdefault(parsed[1], []).append(day / name)
    return hours


def _closed(day: str, hour: str, now: datetime) -> bool:
    try:
        start = datetime.fromisoformat(f"{day}T{hour}:00:00+00:00")
    except ValueError:
        return False
    return start + timedelta(hours=1) + GRACE <= now


def _journaled(journal: Path, target: Path) -> set[str]:
    """Segments an interrupted compaction already put into `target`."""
    try:
        token, *names = journal.read_text().split("\n")
        metadata = pq.read_schema(target).metadata or {}
    except FileNotFoundError:
        return set()
    return set(names) if metadata.get(TOKEN_KEY) == token.encode() else set()


def _write_merged(
    target: Path, inputs: Sequence[Path], schema: pa.Schema, token: str, sort_key: str
) -> Path:
    """Stream `inputs` into a hidden temporary file beside `target`, in row groups of
    ROW_GROUP_ROWS (each sorted by `sort_key`), and fsync it. At most one row group and one
    input batch are in memory at a time."""
    temporary = target.with_name(f".{target.name}.tmp")
    try:
        tagged = schema.with_metadata({TOKEN_KEY: token.encode()})
        with pq.ParquetWriter(temporary, tagged, compression="zstd") as out:
            for group in _row_groups(_batches(inputs, schema), schema):
                out.write_table(group.sort_by(sort_key), ROW_GROUP_ROWS)
        _fsync(temporary)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return temporary


def _write_text(path: Path, text: str) -> None:
    temporary = path.with_name(f"{path.name}.tmp")
    temporary.write_text(text)
    _fsync(temporary)
    os.replace(temporary, path)


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _batches(inputs: Iterable[Path], schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    for path in inputs:
        with pq.ParquetFile(path) as source:
            for batch in source.iter_batches(batch_size=_BATCH_ROWS):
                if batch.schema.equals(schema):
                    yield batch
                else:
                    table = pa.Table.from_batches([batch]).select(schema.names).cast(schema)
                    yield from table.to_batches()


def _row_groups(batches: Iterable[pa.RecordBatch], schema: pa.Schema) -> Iterator[pa.Table]:
    pending: list[pa.RecordBatch] = []
    rows = 0
    for batch in batches:
        pending.append(batch)
        rows += batch.num_rows
        if rows >= ROW_GROUP_ROWS:
            table = pa.Table.from_batches(pending, schema)
            while table.num_rows >= ROW_GROUP_ROWS:
                yield table.slice(0, ROW_GROUP_ROWS)
                table = table.slice(ROW_GROUP_ROWS)
            pending, rows = table.to_batches(), table.num_rows
    if rows:
        yield pa.Table.from_batches(pending, schema)


def _subdirs(path: Path) -> list[Path]:
    try:
        return sorted(Path(entry.path) for entry in os.scandir(path) if entry.is_dir())
    except (FileNotFoundError, NotADirectoryError):
        return []


def _date(name: str) -> date | None:
    try:
        return date.fromisoformat(name)
    except ValueError:
        return None


def _remove(folder: Path) -> bool:
    """Delete `folder`, tolerating another process deleting it (or its files) meanwhile."""
    for _ in range(3):
        try:
            shutil.rmtree(folder)
            return True
        except FileNotFoundError:
            if not folder.exists():
                return False
        except OSError as exc:
            log.warning("could not delete expired log folder %s: %s", folder, exc)
            return False
    return False
