"""Batch scoring: a job that scores a CSV/Parquet file, folder or glob on the server with one
version of a deployment, chunk by chunk, out of the serving processes.

Each chunk becomes one Parquet part file of the output folder (`<data root>/batch/<id>/`,
the input's columns, `prediction`, `probabilities`, `prediction_id`) and one file of the
prediction log (role `batch`), both under names fixed by the chunk's number, so a job
resumed after a kill skips the chunks it finished and never logs a row twice. Prediction
ids are `batch-<id>-<row index>`: actuals posted for them grade the rows later.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from turnout.errors import BadRequest, Conflict
from turnout.lifecycle.retrain.data import local_files, s3_download
from turnout.lifecycle.retrain.process import JobFailed, JobProcess, blame, say
from turnout.lifecycle.sources import DataAccess
from turnout.monitoring.encoding import LogEntry, prediction_table
from turnout.monitoring.layout import PREDICTIONS, day_dir, kind_dir
from turnout.monitoring.remote import RemoteLog
from turnout.monitoring.segments import SEGMENT_ROW_GROUP_ROWS, clustered, write_atomically
from turnout.registry.flavors import Prediction
from turnout.registry.service import Registry
from turnout.registry.signature import Signature
from turnout.store.records import JobRecord, VersionRecord
from turnout.types import JSON

BATCH_KIND = "batch"
ROLE = "batch"
CHUNK_ROWS = 10_000
MAX_CHUNK_ROWS = 1_000_000
TIMEOUT_S = 24 * 3600.0
"""A batch job running longer than this is stopped (the supervisor's timeout)."""
MAX_PATH_CHARS = 4096
OUTPUT_COLUMNS = ("prediction", "probabilities", "prediction_id")
MANIFEST = "_batch.json"
"""What the first run of a batch read (files, sizes, chunk size): a resumed run must read
the same, or its chunks would not be the same rows."""
_PART = re.compile(r"part-(\d{6})\.parquet")


@dataclass(frozen=True)
class BatchSpec:
    """What a batch job scores, fixed when the job is created."""

    deployment: str
    model: str
    version: int
    revision: int
    """The deployment's active revision when the job was created (logged with each row)."""
    input: str
    """A CSV/Parquet file, folder or glob on the server, under a data root."""
    chunk_rows: int = CHUNK_ROWS
    log_payloads: float = 1.0
    """The share of rows whose inputs and outputs are logged (the revision's)."""
    origin: int | None = None
    """The batch job this one resumes (the first of the chain): its folder and ids."""
    timeout_s: float = TIMEOUT_S

    def to_dict(self) -> dict[str, JSON]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BatchSpec:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def lineage(self, job_id: int) -> int:
        """The id that names the output folder, the log files and the prediction ids."""
        return self.origin if self.origin is not None else job_id


# -- checks when a job is asked for ----------------------------------------------------------


def check_input(location: str, signature: Signature, access: DataAccess | None) -> None:
    """Refuse an input the server may not read, that does not exist, or whose files lack
    one of the model's input columns; before any job is created."""
    if location.startswith("s3://") and "\x00" not in location:
        if access is not None:  # its columns are checked by the job, once it has the files
            access.check_url(location, what="the batch input")
        return
    if "://" in location or "\x00" in location or len(location) > MAX_PATH_CHARS:
        raise BadRequest(
            "batch input must be a CSV/Parquet file, folder or glob on the server, or an "
            "s3:// object, prefix or glob"
        )
    if access is not None:
        access.check_path(location, what="the batch input")
    files = input_files(location)
    if access is not None:
        access.check_files(files, what="the batch input")
    for path in files:
        missing = [name for name in signature.names if name not in header(path)]
        if missing:
            raise BadRequest(
                f"batch input file {path.name} lacks the model's input columns {', '.join(missing)}"
            )


def input_files(location: str) -> list[Path]:
    if not any(char in location for char in "*?[") and not Path(location).expanduser().exists():
        raise BadRequest(
            f"batch input {location} does not exist on the server (give a file, a folder or "
            "a glob such as data/2026-*.parquet)"
        )
    return local_files(location)


def header(path: Path) -> list[str]:
    """The column names of a CSV or Parquet file, read without its rows."""
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return list(pq.read_schema(path).names)
        return [str(c) for c in pd.read_csv(path, nrows=0).columns]
    except (ValueError, OSError, pa.ArrowException, pd.errors.ParserError) as exc:
        raise BadRequest(f"cannot read batch input file {path.name}: {exc}") from exc


def check_chunk_rows(chunk_rows: int) -> int:
    if not 1 <= chunk_rows <= MAX_CHUNK_ROWS:
        raise BadRequest(f"chunk_rows must be between 1 and {MAX_CHUNK_ROWS}, not {chunk_rows}")
    return chunk_rows


def resumed_spec(earlier: JobRecord, deployment: str, asked: dict[str, Any]) -> BatchSpec:
    """The spec of a job that resumes `earlier`: the same input, version and chunks (a
    different one asked for is refused), continuing its folder and ids."""
    if earlier.kind != BATCH_KIND or earlier.deployment != deployment:
        raise BadRequest(f"job {earlier.id} is not a batch job of deployment {deployment!r}")
    if earlier.active:
        raise BadRequest(f"job {earlier.id} is still {earlier.state}; resume it once it ended")
    spec = BatchSpec.from_dict(earlier.spec)
    for key, value in asked.items():
        if value is not None and value != getattr(spec, key):
            raise BadRequest(
                f"a resumed batch keeps job {earlier.id}'s {key} ({getattr(spec, key)}); "
                f"leave {key} out"
            )
    return BatchSpec(**{**asdict(spec), "origin": spec.lineage(earlier.id)})


# -- reading the input chunk by chunk ----------------------------------------------------------


def count_rows(path: Path) -> int:
    if path.suffix.lower() in (".parquet", ".pq"):
        return int(pq.ParquetFile(path).metadata.num_rows)
    first = header(path)[:1]
    return sum(len(c) for c in pd.read_csv(path, usecols=first, chunksize=100_000))


def _file_chunks(path: Path, rows: int) -> Iterator[pd.DataFrame]:
    if path.suffix.lower() in (".parquet", ".pq"):
        for batch in pq.ParquetFile(path).iter_batches(batch_size=rows):
            yield batch.to_pandas()
    else:
        yield from pd.read_csv(path, chunksize=rows)


def chunks(files: list[Path], rows: int) -> Iterator[pd.DataFrame]:
    """The files' rows in order, `rows` at a time (the last chunk may be shorter): chunk i
    holds rows [i * rows, (i + 1) * rows) whatever the files' boundaries."""
    held: list[pd.DataFrame] = []
    count = 0
    for path in files:
        for frame in _file_chunks(path, rows):
            held.append(frame)
            count += len(frame)
            while count >= rows:
                whole = pd.concat(held, ignore_index=True) if len(held) > 1 else held[0]
                yield whole.iloc[:rows].reset_index(drop=True)
                rest = whole.iloc[rows:]
                held, count = ([rest] if len(rest) else []), len(rest)
    if count:
        yield pd.concat(held, ignore_index=True) if len(held) > 1 else held[0]


# -- the output --------------------------------------------------------------------------------


def output_folder(access: DataAccess, lineage: int) -> Path:
    if not access.roots:
        raise JobFailed("the server has no data root to write batch output to")
    return access.roots[0] / "batch" / str(lineage)


def part_path(folder: Path, chunk: int) -> Path:
    return folder / f"part-{chunk:06d}.parquet"


def output_parts(location: str, access: DataAccess | None) -> list[Path]:
    """The part files of a batch output folder, in row order."""
    folder = Path(location)
    if access is not None and not access.within(folder):
        raise BadRequest("the job's output is not under a folder this server reads data from")
    if not folder.is_dir():
        raise BadRequest("the job's output folder is gone")
    return sorted(p for p in folder.iterdir() if _PART.fullmatch(p.name))


def output_schema(parts: list[Path]) -> pa.Schema:
    """One schema for all parts (a CSV column read as integers in one chunk and as
    decimals in another becomes decimals)."""
    try:
        return pa.unify_schemas([pq.read_schema(p) for p in parts], promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise Conflict(
            f"the output's part files disagree on a column's type ({exc}); read the part "
            "files one by one"
        ) from exc


def progress_message(done: int, total: int) -> str:
    """How far a batch job got, as its message says it (`turnout batch --wait` reads it)."""
    return f"scored {done:,} of {total:,} rows"


class _Sink:
    """A write-only file that hands out what was written since it was last drained."""

    def __init__(self) -> None:
        self.pieces: list[bytes] = []
        self.size = 0
        self.closed = False

    def write(self, data: bytes) -> int:
        self.pieces.append(bytes(data))
        self.size += len(data)
        return len(data)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def writable(self) -> bool:
        return True

    def drain(self) -> bytes:
        data, self.pieces = b"".join(self.pieces), []
        return data


def stream_output(parts: list[Path]) -> Iterator[bytes]:
    """The parts as one Parquet file, produced a part at a time. Their common schema is
    worked out at once, so a conflict is refused before any byte is sent."""
    schema = (
        output_schema(parts) if parts else pa.schema([(c, pa.string()) for c in OUTPUT_COLUMNS])
    )

    def produce() -> Iterator[bytes]:
        sink = _Sink()
        writer = pq.ParquetWriter(sink, schema, compression="zstd")
        for path in parts:
            writer.write_table(pq.read_table(path).select(schema.names).cast(schema))
            yield sink.drain()
        writer.close()
        yield sink.drain()

    return produce()


# -- the job process -------------------------------------------------------------------------


class BatchJob(JobProcess):
    """A claimed batch job: score the input chunk by chunk into its output folder and the
    prediction log, skipping chunks an earlier run of the same batch finished."""

    def __init__(
        self,
        job: JobRecord,
        *,
        registry: Registry,
        log_root: Path,
        access: DataAccess,
        remote: RemoteLog | None = None,
    ) -> None:
        super().__init__(job, db=registry.db)
        self.spec = BatchSpec.from_dict(job.spec)
        self.registry = registry
        self.log_root = log_root
        self.remote = remote
        """The object store the log is shared on: each chunk's rows are pushed there before
        the chunk counts as done."""
        self.access = access
        self.lineage = self.spec.lineage(job.id)
        self.folder = Path()
        """The output folder, once `run` found the data root."""

    def run(self) -> str:
        spec = self.spec
        self.folder = output_folder(self.access, self.lineage)
        record = self.registry.get_version(spec.model, spec.version)
        say(
            f"job {self.job.id}: batch scoring {spec.input} with {record.ref} for deployment "
            f"{spec.deployment} into {self.folder}, {spec.chunk_rows} rows a chunk, "
            f"pid {os.getpid()}"
        )
        self.stage(0.0, "reading the input")
        with tempfile.TemporaryDirectory(prefix=f"batch-{self.job.id}-") as fetched:
            files, total = self.prepare(Path(fetched))
            with blame(f"loading {record.ref} failed:"):
                servable = self.registry.load(record)
            done, skipped, chunk = 0, 0, -1
            self.stage(0.0, progress_message(0, total))
            for chunk, frame in enumerate(chunks(files, spec.chunk_rows)):
                start = chunk * spec.chunk_rows
                if part_path(self.folder, chunk).exists():
                    skipped += 1
                else:
                    self.score(chunk, start, frame, record, servable)
                done = start + len(frame)
                self.stage(done / max(total, 1), progress_message(done, total), quiet=True)
        say(f"scored {done} rows in {chunk + 1} chunks ({skipped} done by an earlier run)")
        result: dict[str, JSON] = {
            "output": str(self.folder),
            "rows": done,
            "chunks": chunk + 1,
            "resumed_chunks": skipped,
            "scored_version": record.version,
            "prediction_ids": f"batch-{self.lineage}-<row index>",
        }
        self.succeed(progress_message(done, total), result)
        return f"scored {done} rows into {self.folder}"

    def prepare(self, fetched: Path) -> tuple[list[Path], int]:
        """The input's files (an s3:// input downloaded into `fetched`) and row count,
        checked against what an earlier run read."""
        spec = self.spec
        with blame("reading the batch input failed:"):
            check_input(spec.input, self.signature(), self.access)
            if spec.input.startswith("s3://"):
                downloaded = s3_download(spec.input, fetched)
                files = [copy for _, copy in downloaded]
                sizes = [[name, copy.stat().st_size] for name, copy in downloaded]
                for path in files:
                    missing = [n for n in self.signature().names if n not in header(path)]
                    if missing:
                        raise BadRequest(
                            f"batch input {path.name} lacks the model's input columns "
                            f"{', '.join(missing)}"
                        )
            else:
                files = input_files(spec.input)
                sizes = [[str(p), p.stat().st_size] for p in files]
            total = sum(count_rows(p) for p in files)
        manifest = {"input": spec.input, "files": sizes, "chunk_rows": spec.chunk_rows,
                    "model": spec.model, "version": spec.version, "rows": total}  # fmt: skip
        path = self.folder / MANIFEST
        if path.exists():
            earlier = orjson.loads(path.read_bytes())
            if earlier != manifest:
                raise JobFailed(
                    f"the batch input changed since job {self.lineage} read it (files, sizes "
                    "or rows differ): start a new batch instead of resuming"
                )
        else:
            self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            write_bytes_atomically(path, orjson.dumps(manifest))
        return files, total

    def signature(self) -> Signature:
        record = self.registry.get_version(self.spec.model, self.spec.version)
        return Signature.from_dict(record.signature)

    def score(
        self, chunk: int, start: int, frame: pd.DataFrame, record: VersionRecord, servable: Any
    ) -> None:
        """Score one chunk; log its rows, then write its part file (the mark that it is done)."""
        signature = servable.signature
        where = f"chunk {chunk} (rows {start} to {start + len(frame) - 1})"
        missing = [name for name in signature.names if name not in frame.columns]
        if missing:
            raise JobFailed(f"{where} lacks the model's input columns {', '.join(missing)}")
        with blame(f"{where}: the input columns do not fit the model's signature:"):
            features = frame[list(signature.names)]
            rows = features.to_numpy(dtype=np.float64 if signature.numeric else object)
        started = time.monotonic()
        with blame(f"{where}: {record.ref} raised"):
            answer = servable.predict(rows)
        latency_ms = (time.monotonic() - started) * 1000
        if len(answer.values) != len(frame):
            raise JobFailed(f"{where}: {record.ref} returned {len(answer.values)} predictions")
        ids = [f"batch-{self.lineage}-{start + k}" for k in range(len(frame))]
        self.log(chunk, ids, rows, answer, latency_ms)
        table = pa.Table.from_pandas(
            frame.drop(columns=[c for c in OUTPUT_COLUMNS if c in frame.columns]),
            preserve_index=False,
        )
        table = table.append_column("prediction", pa.array(np.asarray(answer.values).tolist()))
        if answer.probabilities is not None:
            probabilities = np.asarray(answer.probabilities, dtype=np.float64).tolist()
            table = table.append_column(
                "probabilities", pa.array(probabilities, pa.list_(pa.float64()))
            )
        table = table.append_column("prediction_id", pa.array(ids, pa.string()))
        write_atomically(part_path(self.folder, chunk), table)

    def log(
        self, chunk: int, ids: list[str], rows: Any, answer: Prediction, latency_ms: float
    ) -> None:
        """The chunk's rows in the prediction log under a name fixed by the chunk, after any
        file an earlier, killed run wrote for it (so no row is logged twice)."""
        spec = self.spec
        name = f"batch_{self.lineage}-%s-{chunk:06d}.parquet"
        if spec.origin is not None:  # only a resumed batch can find files of its chunks
            if self.remote is not None:
                with blame(f"chunk {chunk}: reading the shared prediction log failed:"):
                    self.remote.pull()
            for stale in kind_dir(self.log_root, PREDICTIONS).glob(f"day=*/{name % '*'}"):
                if self.remote is not None:
                    with blame(f"chunk {chunk}: withdrawing an earlier run's rows failed:"):
                        self.remote.delete(stale)
                stale.unlink(missing_ok=True)
        share = spec.log_payloads
        keep = np.random.default_rng([self.lineage, chunk]).random(len(ids)) < share
        now = datetime.now(UTC)
        bare = LogEntry(spec.deployment, spec.revision, spec.model, spec.version, ROLE, ids=[],
                        ts=now.timestamp(), latency_ms=latency_ms, outcome="ok")  # fmt: skip
        probabilities = answer.probabilities
        entries = [
            replace(bare, ids=[i for i, k in zip(ids, keep, strict=True) if k], rows=rows[keep],
                    prediction=Prediction(
                        np.asarray(answer.values)[keep],
                        None if probabilities is None else np.asarray(probabilities)[keep],
                    )),
            replace(bare, ids=[i for i, k in zip(ids, keep, strict=True) if not k]),
        ]  # fmt: skip
        with blame(f"chunk {chunk}: logging its rows failed:"):
            table = clustered(prediction_table(spec.deployment, entries), PREDICTIONS)
            folder = day_dir(self.log_root, PREDICTIONS, now.date())
            folder.mkdir(parents=True, exist_ok=True)
            write_atomically(folder / (name % f"{now:%H}"), table, SEGMENT_ROW_GROUP_ROWS)
        if self.remote is not None:
            with blame(f"chunk {chunk}: pushing its rows to the shared prediction log failed:"):
                self.remote.push()


def write_bytes_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)
