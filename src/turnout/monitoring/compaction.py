"""Compaction and retention of the prediction log.

Each writer merges its own segments of a closed hour into one `<writer>-<HH>.compact.parquet`
sorted by deployment and time, in large row groups, so readers open a few files instead of
thousands and skip the row groups of other deployments. An hour too large to sort in memory
is sorted in runs written to disk, then merged, so memory stays bounded. Any writer may
delete days past the retention period.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import uuid
from collections.abc import Generator, Iterable, Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
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
RUN_ROWS = 128 * 1024
"""Rows sorted in memory at once. A larger hour is sorted in runs of about this many rows,
written to a hidden folder beside the compacted file, then merged."""
_BATCH_ROWS = 64 * 1024
_RUN_BATCH_ROWS = 1024
"""Batches of a run file: a merge reads a few thousand rows of each run at a time."""
_MIN_STEP_ROWS = 1024


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
    beside `target` in row groups of ROW_GROUP_ROWS, and fsync it. About RUN_ROWS rows are
    in memory at a time, however many the inputs hold."""
    schema = SCHEMAS[kind]
    temporary = target.with_name(f".{target.name}.tmp")
    runs = target.with_name(f".{target.name}.runs")
    try:
        tagged = schema.with_metadata({TOKEN_KEY: token.encode()})
        with pq.ParquetWriter(temporary, tagged, compression="zstd") as out:
            ordered = _sorted(_batches(inputs, schema), schema, SORT_KEYS[kind], runs)
            for group in _slices(ordered, schema, ROW_GROUP_ROWS):
                out.write_table(group, ROW_GROUP_ROWS)
        _fsync(temporary)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(runs, ignore_errors=True)
    return temporary


def _sorted(
    batches: Iterable[pa.RecordBatch], schema: pa.Schema, keys: Sequence[str], runs: Path
) -> Iterator[pa.RecordBatch]:
    """`batches` in key order: sorted in memory when they hold at most about RUN_ROWS rows;
    otherwise sorted in runs of that size, written under `runs`, then merged."""
    order = [(key, "ascending") for key in keys]
    written: list[Path] = []
    pending: list[pa.RecordBatch] = []
    rows = 0
    for batch in batches:
        if rows >= RUN_ROWS:  # a full run, and more rows to come: write it
            runs.mkdir(exist_ok=True)
            written.append(_write_run(runs, len(written), pending, schema, order))
            pending, rows = [], 0
        pending.append(batch)
        rows += batch.num_rows
    if not written:
        yield from pa.Table.from_batches(pending, schema).sort_by(order).to_batches()
        return
    written.append(_write_run(runs, len(written), pending, schema, order))
    del pending
    yield from _merge(written, keys, max(_MIN_STEP_ROWS, RUN_ROWS // len(written)))


def _write_run(
    runs: Path,
    index: int,
    batches: list[pa.RecordBatch],
    schema: pa.Schema,
    order: list[tuple[str, str]],
) -> Path:
    """One sorted run as an Arrow IPC file of small compressed batches (quicker to write and
    read back than Parquet; it lives only until the merge ends)."""
    path = runs / f"{index:06d}.arrow"
    run = pa.Table.from_batches(batches, schema).sort_by(order)
    options = pa.ipc.IpcWriteOptions(compression="lz4")
    with pa.ipc.new_file(path, schema, options=options) as out:
        out.write_table(run, max_chunksize=_RUN_BATCH_ROWS)
    return path


def _read_run(path: Path, step_rows: int) -> Generator[pa.Table]:
    """A run's rows, about `step_rows` at a time."""
    with pa.OSFile(str(path)) as source:
        reader = pa.ipc.open_file(source)
        pending: list[pa.RecordBatch] = []
        rows = 0
        for index in range(reader.num_record_batches):
            pending.append(reader.get_batch(index))
            rows += pending[-1].num_rows
            if rows >= step_rows:
                yield pa.Table.from_batches(pending)
                pending, rows = [], 0
        if rows:
            yield pa.Table.from_batches(pending)


def _merge(runs: Sequence[Path], keys: Sequence[str], step_rows: int) -> Iterator[pa.RecordBatch]:
    """The rows of sorted run files in key order, reading `step_rows` of each at a time.
    Each step emits the rows read so far whose keys are at most the smallest of the runs'
    last keys read: no row still unread can come before them."""
    order = [(key, "ascending") for key in keys]
    readers = [_read_run(run, step_rows) for run in runs]
    with contextlib.ExitStack() as stack:
        for reader in readers:
            stack.callback(reader.close)
        heads = [next(reader, None) for reader in readers]
        while any(head is not None for head in heads):
            bound = min(_last_key(head, keys) for head in heads if head is not None)
            taken: list[pa.Table] = []
            for index, head in enumerate(heads):
                if head is None:
                    continue
                count = _count_at_most(head, keys, bound)
                taken.append(head.slice(0, count))
                rest = head.slice(count)
                heads[index] = rest if rest.num_rows else next(readers[index], None)
            yield from pa.concat_tables(taken).sort_by(order).to_batches()


def _last_key(table: pa.Table, keys: Sequence[str]) -> tuple[Any, ...]:
    last = table.num_rows - 1
    return tuple(table.column(key)[last].as_py() for key in keys)


def _count_at_most(table: pa.Table, keys: Sequence[str], bound: tuple[Any, ...]) -> int:
    """How many leading rows of `table` (sorted by `keys`) have keys at most `bound`."""
    pairs = [(table.column(key), value) for key, value in zip(keys, bound, strict=True)]
    column, value = pairs[-1]
    at_most = pc.less_equal(column, pa.scalar(value, column.type))
    for column, value in reversed(pairs[:-1]):
        scalar = pa.scalar(value, column.type)
        at_most = pc.or_(pc.less(column, scalar), pc.and_(pc.equal(column, scalar), at_most))
    return int(pc.sum(at_most).as_py() or 0)


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
        with pq.ParquetFile(path, pre_buffer=False) as source:
            for batch in source.iter_batches(batch_size=_BATCH_ROWS):
                if batch.schema.equals(schema):
                    yield batch
                else:
                    table = pa.Table.from_batches([batch]).select(schema.names).cast(schema)
                    yield from table.to_batches()


def _slices(batches: Iterable[pa.RecordBatch], schema: pa.Schema, size: int) -> Iterator[pa.Table]:
    """`batches` regrouped into tables of `size` rows (the last one smaller)."""
    pending: list[pa.RecordBatch] = []
    rows = 0
    for batch in batches:
        pending.append(batch)
        rows += batch.num_rows
        if rows >= size:
            table = pa.Table.from_batches(pending, schema)
            while table.num_rows >= size:
                yield table.slice(0, size)
                table = table.slice(size)
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
