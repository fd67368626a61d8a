"""The rows a retrain trains on, from the policy's data source, with their fingerprint.

Files (one, a folder, a glob, or the same on S3), a SQL query, or the deployment's own logged
inputs joined with their actuals; a reference table (older rows) goes in front. `sources`
records exactly what was read: file sha256s, the database URL without its password, the window.
"""

from __future__ import annotations

import glob
import hashlib
import importlib
import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath
from typing import Any

import orjson
import pandas as pd
from pandas.errors import DatabaseError
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError

from turnout.errors import BadRequest
from turnout.lifecycle.retrain.policy import DataSource
from turnout.lifecycle.sources import DataAccess
from turnout.monitoring.query import LogReader
from turnout.registry.baseline import fingerprint, read_table
from turnout.store.s3 import s3_client as store_s3_client
from turnout.types import JSON

SUFFIXES = (".csv", ".parquet", ".pq")
"""The files a folder or a glob contributes; anything else (notes, `_SUCCESS`) is ignored."""
HIDDEN_PREFIXES = (".", "_")
"""Files and folders a folder or glob skips, as Spark and pyarrow datasets do
(`_temporary/`, `.part.crc`)."""
LIVE_ROLES = ("champion", "challenger", "failover")
"""Roles whose answers reached callers; a shadow answers the same prediction ids again."""
S3_ENDPOINT_ENV = "TURNOUT_S3_ENDPOINT_URL"
"""Where S3 requests go when set (MinIO, Ceph, R2); else boto3's own defaults."""
_CHUNK = 1 << 20

Part = tuple[pd.DataFrame, dict[str, JSON]]
"""The rows one source gave (already cut to the wanted columns) and its `sources` entry."""


@dataclass(frozen=True)
class TrainingData:
    frame: pd.DataFrame
    """The input columns (the parent's, in its order) and the target column, oldest row
    first (so the newest rows are the tail)."""
    fingerprint: str
    """sha256 of the frame's content (`registry.baseline.fingerprint`)."""
    sources: list[dict[str, JSON]]
    """What was read, e.g. `{"kind": "path", "files": [{"name", "sha256", "rows"}]}`."""

    @property
    def rows(self) -> int:
        return len(self.frame)


def load_training_data(
    source: DataSource,
    *,
    columns: list[str],
    target: str,
    deployment: str,
    log: LogReader,
    access: DataAccess,
) -> TrainingData:
    """Read the reference (if any) and then the source, keep `columns` + `target` in that
    order, drop rows without a target and keep the newest `max_rows`.

    Every source entry says how many rows it gave (`rows`), how many lacked a target
    (`without_target`) and how many of the rest made the cut (`used`). Nothing is read
    unless `access` allows every place the source names.
    """
    if target in columns:
        raise BadRequest(f"the target {target!r} is also one of the model's input columns")
    check_source(source, access)
    wanted = [*columns, target]
    parts: list[Part] = []
    if source.reference is not None:
        parts.append(read_files(source.reference, wanted, kind="reference", access=access))
    if source.path is not None:
        parts.append(read_files(source.path, wanted, kind="path", access=access))
    elif source.sql is not None and source.url is not None:
        parts.append(read_query(source.sql, source.url, wanted))
    elif source.log is not None:
        parts.append(read_log(log, deployment, window_s=source.log, columns=columns, target=target))
    else:  # DataSource's own validation makes this unreachable
        raise BadRequest("the data source names no path, sql (with url) or log")
    labelled = [_labelled(part, target) for part in parts]
    frame = _newest(labelled, source.max_rows)
    return TrainingData(frame, fingerprint(frame), [entry for _, entry in labelled])


def check_source(source: DataSource, access: DataAccess) -> None:
    """Refuse a source naming a file, database or S3 location the server does not read."""
    if source.reference is not None:
        access.check_path(source.reference, what="the reference data")
    if source.path is not None:
        access.check_path(source.path, what="the training data path")
    if source.url is not None:
        access.check_url(source.url, what="the sql source's database")


def _labelled(part: Part, target: str) -> Part:
    frame, entry = part
    present = frame[target].notna()
    entry["without_target"] = int((~present).sum())
    return frame[present], entry


def _newest(parts: list[Part], max_rows: int | None) -> pd.DataFrame:
    """The parts in order, cut to the last `max_rows` rows, with a fresh index."""
    remaining = sum(len(frame) for frame, _ in parts) if max_rows is None else max_rows
    for frame, entry in reversed(parts):
        entry["used"] = min(len(frame), remaining)
        remaining -= entry["used"]
    kept = [frame.tail(entry["used"]) for frame, entry in parts if entry["used"]]
    if not kept:  # nothing left: an empty table of the last part's columns and dtypes
        return parts[-1][0].iloc[:0].reset_index(drop=True)
    return pd.concat(kept, ignore_index=True)


def _columns(frame: pd.DataFrame, wanted: list[str], *, where: str) -> pd.DataFrame:
    missing = [name for name in wanted if name not in frame.columns]
    if missing:
        have = ", ".join(map(str, frame.columns[:30])) + (" ..." if len(frame.columns) > 30 else "")
        raise BadRequest(
            f"{where} lacks the columns {', '.join(missing)} (it has: {have or 'no columns'})"
        )
    return frame[wanted]


# -- files ------------------------------------------------------------------------------------


def read_files(
    location: str, wanted: list[str], *, kind: str, access: DataAccess | None = None
) -> Part:
    """Every table file at `location` (a file, a folder, a glob; local or `s3://`), in sorted
    path order, each checked for the wanted columns (and, with `access`, each leading to
    a place it allows: a symlink inside a data folder may point anywhere)."""
    if location.startswith("s3://"):
        with tempfile.TemporaryDirectory(prefix="turnout-data-") as folder:
            return _read_tables(location, s3_download(location, Path(folder)), wanted, kind)
    files = local_files(location)
    if access is not None:
        access.check_files(files, what=f"the {kind} data")
    return _read_tables(location, [(str(p), p) for p in files], wanted, kind)


def _read_tables(
    location: str, files: list[tuple[str, Path]], wanted: list[str], kind: str
) -> Part:
    frames: list[pd.DataFrame] = []
    described: list[JSON] = []
    for name, path in files:
        frames.append(_columns(read_table(path), wanted, where=f"training data file {name}"))
        described.append({"name": name, "sha256": _sha256(path), "rows": len(frames[-1])})
    frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    entry: dict[str, JSON] = {"kind": kind, "path": location, "files": described}
    entry["rows"] = len(frame)
    return frame.reset_index(drop=True), entry


def local_files(location: str) -> list[Path]:
    """The file itself; or a folder's table files, recursively; or a glob's (`**` too)."""
    path = Path(location).expanduser()
    if _is_glob(location):
        matched = [Path(name) for name in glob.glob(str(path), recursive=True)]
        found = [p for p in matched if p.is_file() and _is_table(PurePosixPath(p.name))]
    elif path.is_dir():
        found = [p for p in path.rglob("*") if p.is_file() and _is_table(p.relative_to(path))]
    elif path.is_file():
        return [path]
    else:
        raise BadRequest(
            f"training data {location} does not exist on the server (give a file, a folder "
            "or a glob such as data/2026-*.parquet)"
        )
    if not found:
        raise BadRequest(f"no .csv or .parquet files in {location}")
    return sorted(found)


def _is_glob(location: str) -> bool:
    return any(char in location for char in "*?[")


def _is_table(relative: PurePosixPath | Path) -> bool:
    """A table file whose path (below the folder searched) has no hidden part."""
    return relative.suffix.lower() in SUFFIXES and not any(
        part.startswith(HIDDEN_PREFIXES) for part in relative.parts
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# -- S3 ---------------------------------------------------------------------------------------


def s3_client() -> Any:
    """The one way out to S3 for data (tests swap it for a stubbed client): the client the
    stores use, with credentials as boto3 finds them (environment, profile, instance role)."""
    return store_s3_client(os.environ.get(S3_ENDPOINT_ENV) or None, what="training data")


def s3_download(location: str, into: Path) -> list[tuple[str, Path]]:
    """Download the objects `location` names (an object, a "folder" prefix or a glob) into
    `into`, in sorted key order: (their s3:// name, the local copy)."""
    bucket, _, key = location.removeprefix("s3://").partition("/")
    if not bucket:
        raise BadRequest(f"{location} names no bucket (expected s3://bucket/prefix)")
    client = s3_client()
    errors = importlib.import_module("botocore.exceptions")
    try:
        keys = _s3_keys(client, bucket, key)
        if not keys:
            raise BadRequest(f"no .csv or .parquet objects in {location}")
        files = []
        for number, name in enumerate(keys):
            copy = into / str(number) / PurePosixPath(name).name
            copy.parent.mkdir()
            body = client.get_object(Bucket=bucket, Key=name)["Body"]
            with open(copy, "wb") as handle:
                for chunk in body.iter_chunks(_CHUNK):
                    handle.write(chunk)
            files.append((f"s3://{bucket}/{name}", copy))
    except (errors.BotoCoreError, errors.ClientError) as error:
        raise BadRequest(f"cannot read {location}: {error}") from error
    return files


def _s3_keys(client: Any, bucket: str, key: str) -> list[str]:
    magic = [key.index(char) for char in "*?[" if char in key]
    prefix = key[: min(magic)] if magic else key
    listed: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        listed += [item["Key"] for item in page.get("Contents", [])]
    if magic:
        chosen = [
            k
            for k in listed
            if _glob_match(k, key) and _is_table(PurePosixPath(k.rpartition("/")[2]))
        ]
    elif key in listed and not key.endswith("/"):
        return [key]
    else:
        folder = key.rstrip("/") + "/" if key else ""
        chosen = [
            k
            for k in listed
            if k.startswith(folder) and _is_table(PurePosixPath(k.removeprefix(folder)))
        ]
    return sorted(chosen, key=lambda k: k.split("/"))


def _glob_match(key: str, pattern: str) -> bool:
    """Part by part, like a local glob: `*` never crosses a `/`."""
    parts, wanted = key.split("/"), pattern.split("/")
    return len(parts) == len(wanted) and all(map(fnmatchcase, parts, wanted))


# -- SQL --------------------------------------------------------------------------------------


def read_query(query: str, url: str, wanted: list[str]) -> Part:
    """The query's result, read with SQLAlchemy; the URL's password never reaches a message
    or `sources`."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        raise BadRequest(
            "the sql source's url is not a database URL (e.g. postgresql://user@host/db or "
            "sqlite:///path/to/file.db)"
        ) from None
    shown = parsed.render_as_string(hide_password=True)
    secret = parsed.password
    try:
        engine = create_engine(parsed)
    except ImportError as error:
        raise BadRequest(
            f"cannot use database {shown}: its driver is not installed ({error})"
        ) from None
    except (ArgumentError, NoSuchModuleError) as error:
        raise BadRequest(f"cannot use database {shown}: {_hidden(str(error), secret)}") from None
    try:
        with engine.connect() as connection:
            frame = pd.read_sql(query, connection)
    except (SQLAlchemyError, DatabaseError) as error:
        raise BadRequest(
            f"the training query against {shown} failed: {_hidden(_driver_message(error), secret)}"
        ) from None
    finally:
        engine.dispose()
    entry: dict[str, JSON] = {"kind": "sql", "url": shown}
    entry["query_sha256"] = hashlib.sha256(query.encode()).hexdigest()
    entry["rows"] = len(frame)
    return _columns(frame, wanted, where="the training query's result"), entry


def _driver_message(error: BaseException) -> str:
    """The database's own words, without SQLAlchemy's wrapping (statement, help link)."""
    cause = error.__cause__ if isinstance(error, DatabaseError) else error
    if isinstance(cause, DBAPIError) and cause.orig is not None:
        return str(cause.orig)
    return str(cause or error)


def _hidden(message: str, secret: str | None) -> str:
    return message.replace(secret, "***") if secret else message


# -- logged traffic ---------------------------------------------------------------------------


def read_log(
    reader: LogReader,
    deployment: str,
    *,
    window_s: float,
    columns: list[str],
    target: str,
    now: datetime | None = None,
) -> Part:
    """Live answers made in the last `window_s` seconds that have an actual: one row per
    prediction id, its logged inputs and the actual as `target`, oldest prediction first.

    Ids whose inputs were not logged (payload logging may be sampled) are skipped and
    counted as `without_inputs`; inputs that do not fit `columns`, as `unreadable_inputs`.
    """
    until = now or datetime.now(UTC)
    since = until - timedelta(seconds=window_s)
    wanted = ["prediction_id", "version", "role", "predicted_at", "received_at", "actual"]
    graded = reader.graded(deployment, since=since, until=until).select(wanted).to_pandas()
    live = graded[graded["role"].isin(LIVE_ROLES) & (graded["predicted_at"] >= since)]
    inputs: dict[str, str] = {}
    for (version, role), group in live.groupby(["version", "role"]):
        ids = group["prediction_id"].tolist()
        found = reader.inputs_of(deployment, ids, version=int(version), role=str(role))
        for pid, text in found.items():  # every live answer saw the same inputs
            inputs.setdefault(pid, text)
    answered = (
        live.sort_values("received_at", kind="stable")
        .groupby("prediction_id")
        .agg(predicted_at=("predicted_at", "min"), actual=("actual", "last"))
        .reset_index()
        .sort_values(["predicted_at", "prediction_id"])
    )
    records: list[dict[str, Any]] = []
    unreadable = 0
    for pid, actual in zip(answered["prediction_id"], answered["actual"], strict=True):
        if pid not in inputs:
            continue
        record = _record(orjson.loads(inputs[pid]), columns)
        if record is None:
            unreadable += 1
            continue
        record[target] = None if actual is None or pd.isna(actual) else orjson.loads(actual)
        records.append(record)
    frame = pd.DataFrame(records) if records else pd.DataFrame(columns=[*columns, target])
    entry: dict[str, JSON] = {"kind": "log", "deployment": deployment}
    entry.update(since=since.isoformat(), until=until.isoformat(), rows=len(records))
    entry["without_inputs"] = len(answered) - len(records) - unreadable
    entry["unreadable_inputs"] = unreadable
    return _columns(frame, [*columns, target], where="the logged inputs"), entry


def _record(inputs: Any, columns: list[str]) -> dict[str, Any] | None:
    """One logged input row by column name: a list in the signature's order, or a mapping."""
    if isinstance(inputs, dict):
        return dict(inputs)
    if isinstance(inputs, list) and len(inputs) == len(columns):
        return dict(zip(columns, inputs, strict=True))
    return None
