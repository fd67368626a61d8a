"""How fast is the prediction log to query, and how big is it on disk? Generates a log of N
predictions (and actuals for 10% of the requests) as compacted 1M-row Parquet files, then
times the per-version summary and a 10,000-id lookup, and prints a Markdown table.

    .venv/bin/python -m bench.log_summary [--rows 10000000]

The log holds one deployment: version 3 is champion (80% of requests), version 4 challenger
(20%), version 5 shadow (a copy of 25% of requests); 0.5% of requests get the fallback value;
1% of answers fail and 1% time out. Every answer logs its output (and the class
probabilities when a model gave it); the 30-float inputs JSON is logged for
`--inputs-share` of rows (5% by default). Disk use is also measured on 1M-row files with
inputs on every row and on none. The lookup is timed twice: ids drawn from the whole log
(every file holds some) and ids of the last hour (as when actuals arrive in time order).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
from rich.progress import Progress

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from turnout.monitoring import layout, segments
from turnout.monitoring.layout import (
    ACTUAL_SCHEMA,
    ACTUALS,
    PREDICTION_SCHEMA,
    PREDICTIONS,
)
from turnout.monitoring.query import LogReader

DEPLOYMENT = "churn-prod"
FILE_ROWS = 1_000_000
SHADOW_SHARE = 0.25
ACTUAL_SHARE = 0.10
LOOKUP_IDS = 10_000
START = datetime(2025, 3, 1, tzinfo=UTC)
HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def prediction_ids(ts_us: np.ndarray, rng: np.random.Generator) -> pa.Array:
    """Ids shaped like `layout.new_prediction_id`: 12 hex digits of milliseconds, 20 random."""
    millis = (ts_us // 1000).astype(np.uint64)
    shifts = np.arange(44, -4, -4, dtype=np.uint64)
    digits = (millis[:, None] >> shifts) & np.uint64(0xF)
    noise = rng.integers(0, 16, size=(len(ts_us), 20))
    text = np.ascontiguousarray(HEX[np.hstack([digits.astype(np.int64), noise])])
    fixed = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(32), len(ts_us), [None, pa.py_buffer(text.tobytes())]
    )
    return fixed.cast(pa.binary()).cast(pa.string())


def inputs_json(count: int, rng: np.random.Generator) -> list[str]:
    """Rows of 30 features with the magnitudes of the breast-cancer data (4 decimals)."""
    scale = np.geomspace(0.01, 1000, 30)
    values = np.round(rng.lognormal(0.0, 0.3, size=(count, 30)) * scale, 4)
    return [orjson.dumps(row.tolist()).decode() for row in values]


def prediction_chunk(
    index: int, rows: int, rng: np.random.Generator, inputs_share: float
) -> pa.Table:
    """`rows` predictions logged during hour `index` of the run."""
    requests = round(rows / (1 + SHADOW_SHARE))
    shadows = rows - requests
    hour = START + timedelta(hours=index)
    base_us = int(hour.timestamp() * 1_000_000)
    ts = np.sort(rng.integers(0, 3_600_000_000, size=requests)) + base_us
    ids = prediction_ids(ts, rng)
    mirrored = np.sort(rng.choice(requests, size=shadows, replace=False))
    challenger = rng.random(requests) < 0.2
    fallback = rng.random(requests) < 0.005
    version = np.where(challenger, 4, 3).astype(np.int32)
    role = np.where(challenger, "challenger", "champion").astype(object)
    role[fallback] = "fallback"
    version[fallback] = 3
    version = np.concatenate([version, np.full(shadows, 5, np.int32)])
    role = np.concatenate([role, np.full(shadows, "shadow", dtype=object)])
    ts = np.concatenate([ts, ts[mirrored] + rng.integers(100, 5000, size=shadows)])
    ids = pa.concat_arrays([ids, ids.take(pa.array(mirrored))])
    draw = rng.random(rows)
    outcome = np.where(draw < 0.01, "error", np.where(draw < 0.02, "timeout", "ok")).astype(object)
    outcome[role == "fallback"] = "fallback"
    latency = rng.lognormal(np.log(2.0), 0.5, size=rows).astype(np.float32)
    latency[outcome == "timeout"] = 100.0
    answered = (outcome == "ok") | (outcome == "fallback")
    p_yes = rng.beta(2, 5, size=rows)
    label = (p_yes >= 0.5).astype(np.int64)
    output = np.where(label == 1, "1", "0").astype(object)
    output[~answered] = None
    probabilities = pa.ListArray.from_arrays(
        pa.array(np.arange(0, 2 * rows + 1, 2, dtype=np.int32)),
        pa.array(np.column_stack([1 - p_yes, p_yes]).ravel()),
        mask=pa.array(outcome != "ok"),
    )
    logged = answered & (rng.random(rows) < inputs_share)
    inputs = np.full(rows, None, dtype=object)
    inputs[logged] = inputs_json(int(logged.sum()), rng)
    error = np.full(rows, None, dtype=object)
    error[outcome == "error"] = "ValueError: Input contains NaN"
    error[outcome == "timeout"] = "no answer within 100 ms"
    order = np.argsort(ts, kind="stable")
    table = pa.table(
        {
            "prediction_id": ids,
            "deployment": pa.array(np.full(rows, DEPLOYMENT, dtype=object), pa.string()),
            "revision": pa.array(np.full(rows, 7, np.int32)),
            "model": pa.array(np.full(rows, "churn", dtype=object), pa.string()),
            "version": pa.array(version),
            "role": pa.array(role, pa.string()),
            "ts": pa.array(ts, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
            "latency_ms": pa.array(latency),
            "outcome": pa.array(outcome, pa.string()),
            "inputs": pa.array(inputs, pa.string()),
            "output": pa.array(output, pa.string()),
            "probabilities": probabilities,
            "error": pa.array(error, pa.string()),
        },
        schema=PREDICTION_SCHEMA,
    )
    return table.take(pa.array(order))


def actual_chunk(predictions: pa.Table, rng: np.random.Generator) -> pa.Table:
    """Actuals for 10% of the requests of a chunk, one row per logged answer (shadows too),
    right 85% of the time, received a day after the prediction."""
    ids = predictions.column("prediction_id")
    unique = np.unique(ids.to_numpy(zero_copy_only=False))
    chosen = pa.array(rng.choice(unique, size=int(len(unique) * ACTUAL_SHARE), replace=False))
    graded = predictions.filter(pc.is_in(ids, chosen))
    output = graded.column("output").to_numpy(zero_copy_only=False)
    right = rng.random(len(output)) < 0.85
    flipped = np.where(output == "1", "0", "1")
    actual = np.where(right & (output != None), output, flipped)  # noqa: E711
    ts = graded.column("ts")
    received = pc.add(ts, pa.scalar(timedelta(days=1)))
    return pa.table(
        {
            "prediction_id": graded.column("prediction_id"),
            "deployment": graded.column("deployment"),
            "actual": pa.array(actual.astype(object), pa.string()),
            "received_at": received,
            "revision": graded.column("revision"),
            "model": graded.column("model"),
            "version": graded.column("version"),
            "role": graded.column("role"),
            "predicted_at": ts,
            "outcome": graded.column("outcome"),
            "output": graded.column("output"),
            "probabilities": graded.column("probabilities"),
        },
        schema=ACTUAL_SCHEMA,
    )


def write_compacted(root: Path, kind: str, table: pa.Table, index: int, when: datetime) -> Path:
    """Write `table` where compaction would have left it: one file per writer and hour."""
    folder = layout.day_dir(root, kind, when.date())
    folder.mkdir(parents=True, exist_ok=True)
    name = f"w{index}-{when:%H}{segments.COMPACT_SUFFIX}"
    return segments.write_atomically(folder / name, table)


def generate(root: Path, rows: int, inputs_share: float) -> tuple[list[str], list[str], int]:
    """Write the log; return a sample of all ids, a sample of the last hour's ids and the
    number of actual rows."""
    rng = np.random.default_rng(20250301)
    chunks = -(-rows // FILE_ROWS)
    sample: list[str] = []
    recent: list[str] = []
    actual_rows = 0
    with Progress() as progress:
        task = progress.add_task("writing predictions and actuals", total=rows)
        for index in range(chunks):
            size = min(FILE_ROWS, rows - index * FILE_ROWS)
            table = prediction_chunk(index, size, rng, inputs_share)
            hour = START + timedelta(hours=index)
            write_compacted(root, PREDICTIONS, table, index, hour)
            actuals = actual_chunk(table, rng)
            write_compacted(root, ACTUALS, actuals, index, hour + timedelta(days=1))
            actual_rows += actuals.num_rows
            ids = table.column("prediction_id")
            picks = rng.choice(table.num_rows, size=LOOKUP_IDS // chunks + 1, replace=False)
            sample.extend(ids.take(pa.array(picks)).to_pylist())
            recent = ids.take(pa.array(rng.choice(table.num_rows, LOOKUP_IDS))).to_pylist()
            progress.advance(task, size)
    return sample[:LOOKUP_IDS], recent, actual_rows


def timed(call: Callable[[], object], repeats: int = 5) -> float:
    """Median seconds of `repeats` calls after one warm-up call."""
    call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def disk_bytes(root: Path, kind: str) -> int:
    return sum(f.stat().st_size for f in (root / kind).rglob("*.parquet"))


def payload_sizes(folder: Path) -> tuple[float, float]:
    """Bytes per million predictions with the inputs JSON on every row and on none."""
    rng = np.random.default_rng(7)
    sizes = []
    for share in (1.0, 0.0):
        table = prediction_chunk(0, FILE_ROWS, rng, share)
        path = segments.write_atomically(folder / f"payload-{share}.parquet", table)
        sizes.append(path.stat().st_size / (FILE_ROWS / 1e6))
    return sizes[0], sizes[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--inputs-share", type=float, default=0.05)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="turnout-log-") as tmp:
        root = Path(tmp) / "log"
        started = time.perf_counter()
        sample, recent, actual_rows = generate(root, args.rows, args.inputs_share)
        generated_s = time.perf_counter() - started
        reader = LogReader(root)
        summary_s = timed(lambda: reader.summary(DEPLOYMENT))
        lookup_s = timed(lambda: reader.lookup(DEPLOYMENT, sample))
        recent_s = timed(lambda: reader.lookup(DEPLOYMENT, recent))
        found = reader.lookup(DEPLOYMENT, sample).num_rows
        predictions_mb = disk_bytes(root, PREDICTIONS) / (args.rows / 1e6) / 1e6
        actuals_mb = disk_bytes(root, ACTUALS) / (actual_rows / 1e6) / 1e6
        full_mb, bare_mb = (size / 1e6 for size in payload_sizes(Path(tmp)))
        groups = reader.summary(DEPLOYMENT)
    share = f"{args.inputs_share:.0%}"
    measures = [
        ("`summary` over everything (median of 5)", f"{summary_s * 1000:.0f} ms"),
        (
            f"`lookup` of {len(sample):,} ids spread over the whole log",
            f"{lookup_s * 1000:.0f} ms ({found:,} answers)",
        ),
        (f"`lookup` of {len(recent):,} ids of the last hour", f"{recent_s * 1000:.0f} ms"),
        (f"predictions on disk, inputs on {share} of rows", f"{predictions_mb:.1f} MB/M rows"),
        ("predictions on disk, inputs on every row", f"{full_mb:.1f} MB/M rows"),
        ("predictions on disk, no inputs", f"{bare_mb:.1f} MB/M rows"),
        ("actuals on disk", f"{actuals_mb:.1f} MB/M rows"),
    ]
    print(f"\n{args.rows:,} predictions and {actual_rows:,} actual rows ({generated_s:.0f} s)\n")
    print("| measure | value |\n| --- | --- |")
    for measure, value in measures:
        print(f"| {measure} | {value} |")
    print()
    print("| version | role | requests | error rate | p50 ms | p99 ms | actuals | accuracy |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for g in [group.to_dict() for group in groups]:
        print(
            f"| {g['version']} | {g['role']} | {g['requests']:,} | {g['error_rate']:.4f} "
            f"| {g['latency_p50_ms']:.3f} | {g['latency_p99_ms']:.3f} | {g['actuals']:,} "
            f"| {g['accuracy'] if g['accuracy'] is None else round(g['accuracy'], 4)} |"
        )


if __name__ == "__main__":
    main()
