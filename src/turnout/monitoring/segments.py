"""Writing and listing the Parquet files of the prediction log (see `layout`)."""

from __future__ import annotations

import itertools
import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from turnout.monitoring.layout import SORT_KEYS, day_dir, day_of, kind_dir, legacy_day_of

COMPACT_SUFFIX = ".compact.parquet"
DICTIONARY_COLUMNS = ["deployment", "model", "role", "outcome", "error", "revision", "version"]
"""Columns with few distinct values; ids, payloads and timestamps are nearly all distinct,
and trying a dictionary for them only costs time."""
SEGMENT_ROW_GROUP_ROWS = 16 * 1024
"""Rows per row group of a flush's file: a large flush still lets a reader of one deployment
skip most of it; a flush rarely holds more than a few groups."""
_sequence = itertools.count()


def write_segment(
    root: Path,
    kind: str,
    writer: str,
    table: pa.Table,
    *,
    now: datetime | None = None,
) -> Path:
    """Write `table` (rows of any deployments) as one new segment of `writer`, sorted by
    deployment and time, atomically (temporary name, fsync, rename)."""
    when = (now or datetime.now(UTC)).astimezone(UTC)
    folder = day_dir(root, kind, when.date())
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{writer}-{when:%H}-{time_key()}.parquet"
    return write_atomically(folder / name, clustered(table, kind), SEGMENT_ROW_GROUP_ROWS)


def clustered(table: pa.Table, kind: str) -> pa.Table:
    """`table` sorted so that each deployment's rows sit together, oldest first."""
    return table.sort_by([(key, "ascending") for key in SORT_KEYS[kind]])


def write_atomically(path: Path, table: pa.Table, row_group_rows: int | None = None) -> Path:
    temporary = path.with_name(f".{path.name}.tmp")
    pq.write_table(
        table,
        temporary,
        row_group_size=row_group_rows,
        compression="zstd",
        use_dictionary=DICTIONARY_COLUMNS,
    )
    with open(temporary, "rb") as handle:
        os.fchmod(handle.fileno(), 0o600)  # request payloads: the server's user's alone
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    return path


def time_key() -> str:
    """Unique within the process and increasing: microseconds since the epoch and a counter."""
    return f"{datetime.now(UTC).timestamp() * 1e6:.0f}_{next(_sequence):06d}"


def parse_name(name: str) -> tuple[str, str, bool] | None:
    """(writer, hour, compacted) of a log file name, or None for anything else."""
    if name.startswith(".") or not name.endswith(".parquet"):
        return None
    if name.endswith(COMPACT_SUFFIX):
        writer, _, hour = name[: -len(COMPACT_SUFFIX)].rpartition("-")
        return (writer, hour, True) if writer else None
    parts = name[: -len(".parquet")].split("-")
    if len(parts) != 3:
        return None
    return parts[0], parts[1], False


def day_folders(
    root: Path,
    kind: str,
    *,
    deployment: str | None = None,
    first: date = date.min,
    last: date = date.max,
) -> list[tuple[date, Path]]:
    """The day folders of `kind` from `first` to `last`, oldest first: the shared ones, and
    those of the earlier per-deployment layout, of `deployment` only when given."""
    found: list[tuple[date, Path]] = []
    for folder in subdirs(kind_dir(root, kind)):
        day = day_of(folder.name)
        if day is not None:
            found.append((day, folder))
        elif deployment is None or folder.name == deployment:  # the earlier layout
            for sub in subdirs(folder):
                legacy = legacy_day_of(sub.name)
                if legacy is not None:
                    found.append((legacy, sub))
    return sorted(pair for pair in found if first <= pair[0] <= last)


def live_files(
    root: Path,
    kind: str,
    deployment: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[Path]:
    """The files a reader of `deployment` should read: every segment, except those a
    compacted file of the same writer and hour already holds. Shared files hold other
    deployments too (readers filter on the `deployment` column); files of the earlier layout
    are those of `deployment` only. Days outside [since - 1 day, until + 1 day] are skipped
    (rows are filtered by timestamp anyway; the margin covers rows written around
    midnight)."""
    first = (since - timedelta(days=1)).date() if since else date.min
    last = (until + timedelta(days=1)).date() if until else date.max
    files: list[Path] = []
    for _, day in day_folders(root, kind, deployment=deployment, first=first, last=last):
        try:
            names = [(entry.name, parse_name(entry.name)) for entry in os.scandir(day)]
        except FileNotFoundError:  # expired meanwhile
            continue
        compacted = {(p[0], p[1]) for _, p in names if p is not None and p[2]}
        for name, parsed in sorted(names):
            if parsed is None:
                continue
            writer, hour, is_compact = parsed
            if is_compact or (writer, hour) not in compacted:
                files.append(day / name)
    return files


def subdirs(path: Path) -> list[Path]:
    """The folders in `path`, sorted; none when it is missing or not a folder."""
    try:
        return sorted(Path(entry.path) for entry in os.scandir(path) if entry.is_dir())
    except (FileNotFoundError, NotADirectoryError):
        return []
