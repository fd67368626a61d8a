"""Compaction and retention of the prediction log.

Each writer merges its own segments of a closed hour into one `<writer>-<HH>.compact.parquet`
sorted by deployment and time, in large row groups, so readers open a few files instead of
thousands and skip the row groups of other deployments. DuckDB does the sort, spilling to
disk past a fixed memory budget. Any writer may delete days past the retention period.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from turnout.monitoring.layout import KINDS, SCHEMAS, SORT_KEYS, kind_dir
from turnout.monitoring.segments import COMPACT_SUFFIX, day_folders, parse_name

log = logging.getLogger("turnout.monitoring")

ROW_GROUP_ROWS = 128 * 1024
"""Rows per row group of a compacted file: large enough to scan fast, several per file so
engines can read one file in parallel and a reader of one deployment skips the others."""
GRACE = timedelta(minutes=1)
"""An hour counts as closed this long after it ends, so a segment named in its last instant
and still being renamed into place is not missed."""
TOKEN_KEY = b"turnout.compaction"
"""Parquet metadata of a compacted file: a token naming the compaction that wrote it."""
SORT_MEMORY = "256MB"
"""DuckDB's memory for sorting one hour of one writer; past it, the sort spills to a hidden
folder beside the compacted file."""
_BATCH_ROWS = 64 * 1024
_MERGE = """
SELECT {columns}
FROM read_parquet($files, hive_partitioning = false, union_by_name = true)
ORDER BY {order}
"""


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
    are not looked at. Segments left in the earlier per-deployment layout are compacted
    where they are. Returns the number of segments merged."""
    first = since.astimezone(UTC).date() if since else date.min
    merged = 0
    for kind in kinds:
        for day, folder in day_folders(root, kind, first=first):
            for hour, parts in sorted(_segments(folder, writer).items()):
                if not (close or _closed(day, hour, now)):
                    continue
                target = folder / f"{writer}-{hour}{COMPACT_SUFFIX}"
                try:
                    merged += compact_hour(target, parts, kind)
                except Exception as exc:  # one bad hour must not stop the others
                    log.warning("compacting %s hour %s failed: %s", folder, hour, exc)
    return merged


def compact_hour(target: Path, parts: Sequence[Path], kind: str) -> int:
    """Fold `parts` into the compact file `target` (created, or rewritten with its earlier
    rows), then delete them. Returns how many were merged.

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
        merged = _write_merged(target, inputs, kind, token)
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
    """Delete every day folder whose rows are all older than `retention_days`, of every kind
    and both layouts; a deployment folder of the earlier layout left empty goes too. Returns
    the number of day folders deleted; folders another process deletes at the same time are
    skipped."""
    cutoff = (now.astimezone(UTC) - timedelta(days=retention_days)).date()
    removed = 0
    for kind in KINDS:
        emptied: set[Path] = set()
        for _, folder in day_folders(root, kind, last=cutoff - timedelta(days=1)):
            if _remove(folder):
                removed += 1
            if folder.parent != kind_dir(root, kind):
                emptied.add(folder.parent)
        for legacy in sorted(emptied):
            with contextlib.suppress(OSError):  # not empty, or removed by another process
                legacy.rmdir()
    return removed


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


def _closed(day: date, hour: str, now: datetime) -> bool:
    try:
        start = datetime.fromisoformat(f"{day.isoformat()}T{hour}:00:00+00:00")
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


def _write_merged(target: Path, inputs: Sequence[Path], kind: str, token: str) -> Path:
    """Write the rows of `inputs`, sorted by the kind's keys, to a hidden temporary file
    beside `target` in row groups of ROW_GROUP_ROWS, and fsync it. DuckDB sorts within
    SORT_MEMORY; here, one row group and one batch of its output are in memory."""
    schema = SCHEMAS[kind]
    temporary = target.with_name(f".{target.name}.tmp")
    spill = target.with_name(f".{target.name}.spill")
    sql = _MERGE.format(
        columns=", ".join(f'"{name}"' for name in schema.names),
        order=", ".join(f'"{key}"' for key in SORT_KEYS[kind]),
    )
    try:
        tagged = schema.with_metadata({TOKEN_KEY: token.encode()})
        with (
            _sorter(spill) as con,
            pq.ParquetWriter(temporary, tagged, compression="zstd") as out,
        ):
            rows = con.sql(sql, params={"files": [str(path) for path in inputs]})
            batches = _cast(rows.to_arrow_reader(_BATCH_ROWS), schema)
            for group in _row_groups(batches, schema):
                out.write_table(group, ROW_GROUP_ROWS)
        _fsync(temporary)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(spill, ignore_errors=True)
    return temporary


def _sorter(spill: Path) -> duckdb.DuckDBPyConnection:
    """A database for one merge: one thread (serving comes first), bounded memory, spilling
    into `spill`."""
    return duckdb.connect(
        config={"threads": 1, "memory_limit": SORT_MEMORY, "temp_directory": str(spill)}
    )


def _write_text(path: Path, text: str) -> None:
    temporary = path.with_name(f"{path.name}.tmp")
    temporary.write_text(text)
    _fsync(temporary)
    os.replace(temporary, path)


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _cast(batches: Iterable[pa.RecordBatch], schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    """DuckDB's batches in the kind's exact Arrow types (it names list items and time zones
    its own way)."""
    for batch in batches:
        yield from pa.Table.from_batches([batch]).cast(schema).to_batches()


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
