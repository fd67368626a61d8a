"""What a retrain policy adds to a running turnout: the controller's trigger check of one
deployment as its logged traffic grows, and one retrain job from queued to registered.
Prints Markdown tables.

    .venv/bin/python -m bench.retrain [--sizes 10000,100000,1000000] [--repeats 3]

Everything is real and local, in a temporary folder: a SQLite metadata DB and registry
holding `bc:1` (the breast-cancer reference pipeline, StandardScaler + LogisticRegression on
30 features, registered with its training data and its pipeline file) behind `bc-prod`.

Trigger check: for each size, a prediction log of that many answers of the champion spread
over the 24 hours of the policy window (one compacted file per hour), inputs logged on every
row (breast-cancer rows resampled with noise, three features shifted so drift fires),
outputs from the model, actuals for 10% of them. One check is `triggers.gather` + `decide`,
timed for a policy with `drifted_features`, `accuracy_below` and `new_actuals` set, and for
`drifted_features` alone: the median of `--repeats` checks after one warm-up. The CPU time
of the all-triggers check (this process, every thread) gives its share of one core at the
default `check_every`; a second table times its parts one by one.

Retrain job: a job is queued, launched by one `supervise` pass (a `LocalExecutor` child
process) and timed until its row says succeeded, on the 569 breast-cancer rows and on the
same rows repeated to 50,000 (CSV files). Stages come from the job row's progress, polled
every 10 ms; the controller's own loop (how soon a `supervise` pass sees a queued job) is
left out. The bare fit is the same pipeline function called in this process on the same
training rows (the 80% the job does not hold out), after one warm-up fit.
"""

from __future__ import annotations

import argparse
import os
import platform
import runpy
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
from rich.progress import Progress

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fixtures.models import breast_cancer, save_joblib
from tests.fixtures.registry import db_url, open_registry

from bench.log_summary import prediction_ids
from turnout.lifecycle.deployments import Deployments, NewDeployment
from turnout.lifecycle.retrain.executor import JOB_MODULE, LocalExecutor, child_env, supervise
from turnout.lifecycle.retrain.job import split
from turnout.lifecycle.retrain.policy import RetrainPolicy
from turnout.lifecycle.retrain.spec import JobSpec
from turnout.lifecycle.retrain.triggers import count_actuals, decide, gather
from turnout.monitoring import layout, segments
from turnout.monitoring.layout import ACTUAL_SCHEMA, ACTUALS, PREDICTION_SCHEMA, PREDICTIONS
from turnout.monitoring.service import Monitor, Window
from turnout.registry.pipelines import parse_pipeline
from turnout.registry.servable import Servable
from turnout.registry.service import NewVersion, Registry
from turnout.registry.signature import Signature
from turnout.settings import Settings
from turnout.store.jobs import get_job, insert_job
from turnout.store.records import JobRecord, VersionRecord

DEPLOYMENT = "bc-prod"
MODEL = "bc"
PARAMS = {"C": "0.5", "max_iter": "1000"}
HOURS = 24
ACTUAL_SHARE = 0.10
SHIFTED = (0, 1, 23)
"""Features scaled by 1.5 in the logged inputs (mean radius, mean texture, worst area)."""
JOB_ROWS = (569, 50_000)
POLL_S = 0.01
JOB_DEADLINE_S = 600.0

PIPELINE = """
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def fit(data, params):
    model = make_pipeline(
        StandardScaler(),
        LogisticRegression(C=float(params["C"]), max_iter=int(params["max_iter"])),
    )
    return model.fit(data.drop(columns=["target"]), data["target"])
"""

POLICIES = {
    "all": {"drifted_features": 1, "accuracy_below": 0.85, "new_actuals": 5000},
    "drift only": {"drifted_features": 1},
}
"""Triggers of the two policies timed; both judge drift and accuracy over the last 24 h."""

STAGES = ("loading data", "training", "evaluating", "registering", "succeeded")
"""What the job row says as it moves on (`RetrainJob.stage`), in order."""


# -- the stack ----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Stack:
    """The registry, the deployed parent version and its pipeline function."""

    root: Path
    registry: Registry
    parent: VersionRecord
    fit: Callable[[pd.DataFrame, dict[str, str]], Any]


@contextmanager
def open_stack(root: Path) -> Iterator[Stack]:
    """`bc:1`, fitted on the breast-cancer rows and registered with them and its pipeline
    file, deployed as `bc-prod`."""
    features, target = breast_cancer()
    training = root / "train.csv"
    features.assign(target=target).to_csv(training, index=False)
    (root / "pipeline").mkdir()
    pipeline = root / "pipeline" / "train.py"
    pipeline.write_text(PIPELINE)
    fit = runpy.run_path(str(pipeline))["fit"]
    model = fit(features.assign(target=target), dict(PARAMS))
    with open_registry(root) as registry:
        parent = registry.register(NewVersion(
            model=MODEL, source=save_joblib(model, root), flavor="sklearn", params=PARAMS,
            metrics={"accuracy": float(model.score(features, target))},
            training_data=training, target="target", pipeline=parse_pipeline(str(pipeline)),
        ))  # fmt: skip
        Deployments(registry.db, registry).create(
            NewDeployment(name=DEPLOYMENT, model=MODEL, version=parent.version)
        )
        yield Stack(root=root, registry=registry, parent=parent, fit=fit)


# -- the prediction log -------------------------------------------------------------------


def hour_of_traffic(
    stack: Stack, model: Servable, rows: int, start: datetime, rng: np.random.Generator
) -> tuple[pa.Table, pa.Table]:
    """`rows` answers of the champion in the hour from `start`, and actuals for 10% of them
    received 1-30 minutes after each answer."""
    features, target = breast_cancer()
    picks = rng.integers(0, len(features), size=rows)
    values = features.to_numpy()[picks] * rng.lognormal(0.0, 0.05, size=(rows, 30))
    values[:, SHIFTED] *= 1.5
    values = np.round(values, 4)
    answer = model.predict(values)
    labels = np.asarray(answer.values).astype(np.int64)
    base_us = int(start.timestamp() * 1_000_000)
    ts = np.sort(rng.integers(0, 3_600_000_000, size=rows)) + base_us
    probabilities = pa.array(np.asarray(answer.probabilities).tolist(), pa.list_(pa.float64()))
    outputs = pa.array(labels.astype(str).astype(object), pa.string())
    stamps = pa.array(ts, pa.int64()).cast(PREDICTION_SCHEMA.field("ts").type)
    ids = prediction_ids(ts, rng)
    constant = {
        "deployment": pa.array([DEPLOYMENT] * rows, pa.string()),
        "revision": pa.array(np.ones(rows, np.int32)),
        "model": pa.array([MODEL] * rows, pa.string()),
        "version": pa.array(np.full(rows, stack.parent.version, np.int32)),
        "role": pa.array(["champion"] * rows, pa.string()),
    }
    predictions = pa.table(
        {
            "prediction_id": ids,
            **constant,
            "ts": stamps,
            "latency_ms": pa.array(rng.lognormal(np.log(2.0), 0.5, size=rows).astype(np.float32)),
            "outcome": pa.array(["ok"] * rows, pa.string()),
            "inputs": pa.array([orjson.dumps(row).decode() for row in values.tolist()]),
            "output": outputs,
            "probabilities": probabilities,
            "error": pa.nulls(rows, pa.string()),
        },
        schema=PREDICTION_SCHEMA,
    )
    graded = pa.array(np.sort(rng.choice(rows, size=round(rows * ACTUAL_SHARE), replace=False)))
    delay_us = rng.integers(60_000_000, 1_800_000_000, size=len(graded))
    received = ts[graded.to_numpy()] + delay_us
    actual = target.to_numpy()[picks][graded.to_numpy()].astype(str).astype(object)
    actuals = pa.table(
        {
            "prediction_id": ids.take(graded),
            **{name: column.take(graded) for name, column in constant.items()},
            "actual": pa.array(actual, pa.string()),
            "received_at": pa.array(received, pa.int64()).cast(stamps.type),
            "predicted_at": stamps.take(graded),
            "outcome": predictions.column("outcome").take(graded),
            "output": outputs.take(graded),
            "probabilities": probabilities.take(graded),
        }
    ).select(ACTUAL_SCHEMA.names)
    return predictions, actuals.cast(ACTUAL_SCHEMA)


def write_log(stack: Stack, log: Path, rows: int, now: datetime) -> int:
    """The 24 hours of traffic before `now`, as compaction leaves it (one file per writer and
    hour); returns the number of actuals."""
    rng = np.random.default_rng(rows)
    sizes = [rows // HOURS + (hour < rows % HOURS) for hour in range(HOURS)]
    actual_rows = 0
    model = stack.registry.load(stack.parent)
    with Progress(transient=True) as progress:
        task = progress.add_task(f"writing {rows:,} predictions", total=rows)
        for hour, size in enumerate(sizes):
            start = now - timedelta(hours=HOURS - hour)
            predictions, actuals = hour_of_traffic(stack, model, size, start, rng)
            for kind, writer, table in (
                (PREDICTIONS, "gw", predictions),
                (ACTUALS, "api", actuals),
            ):
                folder = layout.day_dir(log, kind, start.date())
                folder.mkdir(parents=True, exist_ok=True)
                name = f"{writer}-{start:%H}{segments.COMPACT_SUFFIX}"
                segments.write_atomically(folder / name, table)
            actual_rows += actuals.num_rows
            progress.advance(task, size)
    return actual_rows


# -- trigger checks -----------------------------------------------------------------------


@dataclass(frozen=True)
class CheckResult:
    rows: int
    actuals: int
    generate_s: float
    check_s: dict[str, float]
    """Median seconds of one check, per policy of `POLICIES`."""
    cpu_s: float
    """Median CPU seconds (this process, all threads) of one all-triggers check."""
    fired: dict[str, list[str]]
    parts_s: dict[str, float]
    """Where an all-triggers check spends its time (see `check_parts`)."""


def time_checks(stack: Stack, log: Path, rows: int, repeats: int) -> CheckResult:
    """One check per policy on a log of `rows` predictions: median seconds of `repeats`
    checks after one warm-up."""
    now = (datetime.now(UTC) + timedelta(days=1)).replace(minute=0, second=0, microsecond=0)
    started = time.perf_counter()
    actuals = write_log(stack, log, rows, now)
    generate_s = time.perf_counter() - started
    db = stack.registry.db
    monitor = Monitor(db, stack.registry, log, writer="bench")
    state = {"checked_at": (now - timedelta(minutes=1)).isoformat()}
    check_s, cpu_s, fired = {}, {}, {}
    for name, triggers in POLICIES.items():
        policy = RetrainPolicy.parse({"data": {"log": "30d"}, "triggers": triggers})

        def check(policy: RetrainPolicy = policy) -> list[str]:
            facts = gather(monitor, stack.registry, db, DEPLOYMENT, policy, state, now)
            return list(decide(policy, facts).detail["fired"])

        fired[name] = check()
        check_s[name], cpu_s[name] = medians(check, repeats)
    parts_s = check_parts(stack, monitor, now, repeats)
    return CheckResult(rows, actuals, generate_s, check_s, cpu_s["all"], fired, parts_s)


def check_parts(stack: Stack, monitor: Monitor, now: datetime, repeats: int) -> dict[str, float]:
    """The pieces of an all-triggers check, each the median of `repeats`, as `gather` reads
    them: the per-version summary (accuracy and actuals come with it), the champion's drift
    (the newest 50,000 logged inputs read, parsed and tested), and counting the new actuals."""
    window = Window.parse(f"{HOURS}h", now=now)
    span = {"since": window.since, "until": window.until}
    champion = stack.parent.version
    summary_s = median_s(lambda: monitor.groups(DEPLOYMENT, **span, performance=False), repeats)
    drift_s = median_s(lambda: monitor.drift(DEPLOYMENT, champion, **span), repeats)
    since = stack.parent.created_at
    count_s = median_s(
        lambda: count_actuals(monitor.root, DEPLOYMENT, since=since, until=now), repeats
    )
    return {"summary": summary_s, "drift": drift_s, "new actuals": count_s}


def medians(call: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median wall seconds and median CPU seconds (this process) of `repeats` calls."""
    wall, cpu = [], []
    for _ in range(repeats):
        started, used = time.perf_counter(), time.process_time()
        call()
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - used)
    return statistics.median(wall), statistics.median(cpu)


def median_s(call: Callable[[], object], repeats: int) -> float:
    return medians(call, repeats)[0]


# -- retrain jobs -------------------------------------------------------------------------


@dataclass(frozen=True)
class JobTimes:
    """Seconds from the job's insertion (queued) to the first poll that saw each stage."""

    seen: dict[str, float]

    def stage_s(self, stage: str) -> float:
        """Time spent before `stage` was reached, since the stage before it."""
        index = STAGES.index(stage)
        before = self.seen[STAGES[index - 1]] if index else 0.0
        return self.seen[stage] - before


def training_csv(root: Path, rows: int) -> Path:
    """The breast-cancer rows, repeated (in order) to `rows`."""
    features, target = breast_cancer()
    table = features.assign(target=target)
    table = pd.concat([table] * -(-rows // len(table)), ignore_index=True).iloc[:rows]
    path = root / f"train-{rows}.csv"
    table.to_csv(path, index=False)
    return path


def queue_job(stack: Stack, data: Path) -> JobRecord:
    """What `Retraining.retrain` queues for `bc-prod`, with a file as the data source."""
    parent = stack.parent
    assert parent.pipeline is not None
    spec = JobSpec(
        deployment=DEPLOYMENT, model=MODEL, parent_version=parent.version, flavor=parent.flavor,
        pipeline=parent.pipeline, params=dict(parent.params), data={"path": str(data)},
        target="target", columns=list(Signature.from_dict(parent.signature).names),
        on_success="register",
    )  # fmt: skip
    with stack.registry.db.write() as conn:
        return insert_job(conn, deployment=DEPLOYMENT, model=MODEL,
                          parent_version=parent.version, trigger="manual",
                          trigger_detail={"reason": "bench"}, spec=spec.to_dict(),
                          actor="bench")  # fmt: skip


def stage_of(job: JobRecord) -> str | None:
    """Which of `STAGES` the job's row shows; None before its process reached the first."""
    if job.state == "succeeded":
        return "succeeded"
    return next((s for s in STAGES if job.message.startswith(s)), None)


def run_job(stack: Stack, executor: LocalExecutor, data: Path) -> JobTimes:
    """Queue a job, launch it with one supervision pass and poll its row until it
    succeeded; then wait for its process to exit."""
    db = stack.registry.db
    job = queue_job(stack, data)
    started = time.perf_counter()
    supervise(db, executor)
    seen: dict[str, float] = {}
    try:
        while "succeeded" not in seen:
            with db.read() as conn:
                job = get_job(conn, job.id)
            moment = time.perf_counter() - started
            stage = stage_of(job)
            if stage is not None:
                seen.setdefault(stage, moment)
            if (not job.active and job.state != "succeeded") or moment > JOB_DEADLINE_S:
                log = executor.log_path(job.id).read_text()
                raise SystemExit(f"job {job.id} {job.state}: {job.message}\n{log}")
            time.sleep(POLL_S)
    finally:  # never leave a job process behind
        if job.active:
            executor.stop(job)
    while executor.alive(job):
        time.sleep(POLL_S)
    for index in range(len(STAGES) - 2, -1, -1):  # a stage shorter than a poll: zero long
        seen.setdefault(STAGES[index], seen[STAGES[index + 1]])
    return JobTimes(seen)


def bare_fit_s(stack: Stack, data: Path, repeats: int) -> float:
    """The pipeline function called here on the rows the job trains on."""
    train, _ = split(pd.read_csv(data), JobSpec.holdout_fraction)
    stack.fit(train.copy(), dict(PARAMS))  # warm-up
    return median_s(lambda: stack.fit(train.copy(), dict(PARAMS)), repeats)


def import_s(repeats: int) -> float:
    """A bare `python -c "import turnout.lifecycle.retrain.job"`: the interpreter and the job
    module's imports, the floor of a job process's start-up."""
    command = [sys.executable, "-c", f"import {JOB_MODULE}"]
    return median_s(lambda: subprocess.run(command, check=True), repeats)


@dataclass(frozen=True)
class JobResult:
    rows: int
    stages: dict[str, float]
    total_s: float
    bare_s: float


def time_jobs(stack: Stack, rows: int, repeats: int) -> JobResult:
    settings = Settings(
        home=stack.root,
        database_url=db_url(stack.root),
        artifact_root=str(stack.root / "artifacts"),
        allow_pickle=True,
    )
    executor = LocalExecutor(stack.root / "jobs", child_env(settings))
    data = training_csv(stack.root, rows)
    runs = [run_job(stack, executor, data) for _ in range(repeats)]
    stages = {s: statistics.median(run.stage_s(s) for run in runs) for s in STAGES}
    total_s = statistics.median(run.seen["succeeded"] for run in runs)
    return JobResult(rows, stages, total_s, bare_fit_s(stack, data, repeats))


# -- report -------------------------------------------------------------------------------


def check_table(results: list[CheckResult], every_s: float) -> list[str]:
    lines = [
        "| logged predictions (24 h window) | actuals | check, all triggers | its CPU time "
        f"| check, drift only | one core used at `check_every: {every_s:g}s` (all) | fired |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in results:
        lines.append(
            f"| {r.rows:,} | {r.actuals:,} | {ms(r.check_s['all'])} | {ms(r.cpu_s)} "
            f"| {ms(r.check_s['drift only'])} | {r.cpu_s / every_s:.2%} "
            f"| {', '.join(r.fired['all']) or 'none'} |"
        )
    return lines


def parts_table(results: list[CheckResult]) -> list[str]:
    lines = [
        "| logged predictions | summary (outcomes, latency, accuracy) "
        "| drift (newest <= 50,000 inputs) | new actuals count |",
        "| ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        p = r.parts_s
        lines.append(
            f"| {r.rows:,} | {ms(p['summary'])} | {ms(p['drift'])} | {ms(p['new actuals'])} |"
        )
    return lines


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms"


def job_table(results: list[JobResult]) -> list[str]:
    lines = [
        "| training rows | queued -> registered | start-up | data load | fit | evaluation "
        "| registration | bare fit in-process | job / bare fit |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        s = r.stages
        lines.append(
            f"| {r.rows:,} | {r.total_s:.2f} s | {s['loading data']:.2f} s "
            f"| {s['training']:.2f} s | {s['evaluating']:.2f} s | {s['registering']:.2f} s "
            f"| {s['succeeded']:.2f} s | {r.bare_s * 1000:.0f} ms | {r.total_s / r.bare_s:.0f}x |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    every_s = RetrainPolicy.model_fields["check_every"].default
    with (
        tempfile.TemporaryDirectory(prefix="turnout-retrain-") as tmp,
        open_stack(Path(tmp)) as stack,
    ):
        checks = []
        for rows in sizes:
            checks.append(time_checks(stack, Path(tmp) / f"log-{rows}", rows, args.repeats))
            print(f"{rows:,} predictions written in {checks[-1].generate_s:.0f} s", flush=True)
        jobs = [time_jobs(stack, rows, args.repeats) for rows in JOB_ROWS]
        imports_s = import_s(args.repeats)
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(
        f"\n{os.cpu_count()} cores ({platform.machine()}, shared with other work; load average "
        f"{load}), Python {platform.python_version()}; medians of {args.repeats}\n"
    )
    print("\n".join(check_table(checks, every_s)))
    print()
    print("\n".join(parts_table(checks)))
    print()
    print("\n".join(job_table(jobs)))
    print(
        f"\nA bare `python -c 'import {JOB_MODULE}'` (interpreter and imports) takes "
        f"{imports_s:.2f} s."
    )


if __name__ == "__main__":
    main()
