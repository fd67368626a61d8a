"""Writing and listing the Parquet files of the prediction log (see `layout`)."""

from __future__ import annotations

import itertools
import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from turnout.monitoring.layout import kind_dir

COMPACT_SUFFIX = ".compact.parquet"
DICTIONARY_COLUMNS = ["deployment", "model", "role", "outcome", "error", "revision", "version"]
"""Columns with few distinct values; ids, payloads and timestamps are nearly all distinct,
and trying a dictionary for them only costs time."""
_sequence = itertools.count()


def day_dir(root: Path, kind: str, deployment: str, when: datetime) -> Path:
    return kind_dir(root, kind, deployment) / when.astimezone(UTC).strftime("%Y-%m-%d")


def write_segment(
    root: Path,
    kind: str,
    deployment: str,
    writer: str,
    table: pa.Table,
    *,
    now: datetime | None = None,
) -> Path:
    """Write `table` as a new segment of `writer`, atomically (temporary name, fsync, rename)."""
    when = now or datetime.now(UTC)
    folder = day_dir(root, kind, deployment, when)
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{writer}-{when.astimezone(UTC):%H}-{time_key()}.parquet"
    return write_atomically(folder / name, table)


def write_atomically(path: Path, table: pa.Table) -> Path:
    temporary = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, temporary, compression="zstd", use_dictionary=DICTIONARY_COLUMNS)
    with open(temporary, "rb") as handle:
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


def live_files(
    root: Path,
    kind: str,
    deployment: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[Path]:
    """The files a reader should read: every segment, except those a compacted file of the
    same writer and hour already holds. Days outside [since - 1 day, until + 1 day] are
    skipped (rows are filtered by timestamp anyway; the margin covers rows written around
    midnight)."""
    folder = kind_dir(root, kind, deployment)
    if not folder.is_dir():
        return []
    first = (since - timedelta(days=1)).date() if since else date.min
    last = (until + timedelta(days=1)).date() if until else date.max
    files: list[Path] = []
    for day in sorted(folder.iterdir()):
        try:
            when = date.fromisoformat(day.name)
        except ValueError:
            continue
        if not (first <= when <= last) or not day.is_dir():
            continue
        names = [(entry.name, parse_name(entry.name)) for entry in os.scandir(day)]
        compacted = {(p[0], p[1]) for _, p in names if p is not None and p[2]}
        for name, parsed in sorted(names):
            if parsed is None:
                continue
            writer, hour, is_compact = parsed
            if is_compact or (writer, hour) not in compacted:
                files.append(day / name)
    return files
