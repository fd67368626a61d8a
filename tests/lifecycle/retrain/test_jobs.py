"""Retrain jobs run as real processes against a real SQLite metadata DB and registry: the
job process refits the parent's pipeline and registers the result, and `supervise` starts,
stops and judges those processes. Test pipelines are in `pipelines.py`."""

from __future__ import annotations

import json
import os
import runpy
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import joblib
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from tests.fixtures.models import breast_cancer, save_joblib, sklearn_pipeline
from tests.fixtures.registry import open_registry
from tests.lifecycle.retrain.pipelines import (
    HANGS,
    NOT_A_MODEL,
    RAISES,
    RECORD_ENV,
    REFERENCE,
    write,
)
from turnout.lifecycle.deployments import Deployments, NewDeployment
from turnout.lifecycle.retrain.executor import (
    Launched,
    LocalExecutor,
    child_env,
    job_process,
    supervise,
)
from turnout.lifecycle.retrain.job import JobFailed, JobStopped, RetrainJob, save_model
from turnout.lifecycle.retrain.ledger import request_cancel
from turnout.lifecycle.retrain.spec import JobSpec
from turnout.lifecycle.sources import DataAccess
from turnout.registry.flavors import get_flavor
from turnout.registry.pipelines import parse_pipeline
from turnout.registry.service import NewVersion, Registry
from turnout.registry.signature import Signature
from turnout.settings import Settings
from turnout.store.clock import now
from turnout.store.jobs import get_job, insert_job, list_jobs, update_job
from turnout.store.records import JobRecord, VersionRecord

PARAMS = {"C": "0.5", "max_iter": "1000"}
ROWS = 569  # the breast-cancer data
DEADLINE_S = 120.0


class Bench:
    """A registry holding `bc:1` (registered with a given pipeline) behind `bc-prod`, and
    jobs run by a LocalExecutor whose processes see the same DB and artifact store."""

    def __init__(self, root: Path, registry: Registry) -> None:
        self.root = root
        self.registry = registry
        self.db = registry.db
        self.received = root / "received.json"
        env = {
            **child_env(Settings(home=root)),
            RECORD_ENV: str(self.received),
            "TURNOUT_DATA_ROOTS": str(root),
        }
        self.executor = LocalExecutor(root / "jobs", env)
        self.watching: set[int] = set()
        self.finished: list[JobRecord] = []
        features, target = breast_cancer()
        table = features.assign(target=target)
        self.fresh = root / "fresh.csv"
        table.to_csv(self.fresh, index=False)
        self.original = root / "original.csv"
        table.iloc[:300].to_csv(self.original, index=False)

    def parent(self, pipeline: str) -> VersionRecord:
        """`bc:1`: the reference pipeline fitted on the original rows, registered with
        `pipeline` as its training code, and deployed."""
        fit = runpy.run_path(str(write(self.root / "reference", REFERENCE)))["fit"]
        model = fit(pd.read_csv(self.original), dict(PARAMS))
        record = self.registry.register(NewVersion(
            model="bc", source=save_joblib(model, self.root), flavor="sklearn", params=PARAMS,
            tags={"team": "risk"}, training_data=self.original, target="target",
            pipeline=parse_pipeline(str(write(self.root / "pipeline", pipeline))),
        ))  # fmt: skip
        Deployments(self.db, self.registry).create(
            NewDeployment(name="bc-prod", model="bc", version=record.version)
        )
        return record

    def submit(self, parent: VersionRecord, **spec: Any) -> JobRecord:
        assert parent.pipeline is not None
        values: dict[str, Any] = {
            "deployment": "bc-prod", "model": "bc", "parent_version": parent.version,
            "flavor": parent.flavor, "pipeline": parent.pipeline, "params": dict(parent.params),
            "data": {"path": str(self.fresh)}, "target": "target",
            "columns": list(Signature.from_dict(parent.signature).names),
        }  # fmt: skip
        with self.db.write() as conn:
            return insert_job(
                conn, deployment="bc-prod", model="bc", parent_version=parent.version,
                trigger="manual", trigger_detail={"reason": "test"},
                spec=JobSpec(**{**values, **spec}).to_dict(), actor="test",
            )  # fmt: skip

    def job(self, job_id: int) -> JobRecord:
        with self.db.read() as conn:
            return get_job(conn, job_id)

    def log(self, job_id: int) -> str:
        path = self.executor.log_path(job_id)
        return path.read_text() if path.exists() else ""

    def supervise(self) -> None:
        self.finished += supervise(self.db, self.executor, watching=self.watching)

    def until(
        self, job_id: int, done: Callable[[JobRecord], bool], *, supervising: bool = True
    ) -> JobRecord:
        deadline = time.monotonic() + DEADLINE_S
        while True:
            if supervising:
                self.supervise()
            job = self.job(job_id)
            if done(job):
                return job
            if time.monotonic() > deadline:
                pytest.fail(f"job {job_id} still {job.state}: {job.message}\n{self.log(job_id)}")
            time.sleep(0.2)

    def finish(self, job_id: int) -> JobRecord:
        return self.until(job_id, lambda job: not job.active)

    def fitting(self, job_id: int) -> JobRecord:
        """Launch the job and wait until its pipeline runs (without supervising meanwhile)."""
        self.supervise()
        job = self.until(
            job_id, lambda j: not j.active or j.message.startswith("training"), supervising=False
        )
        assert job.state == "running", (job.message, self.log(job_id))
        return job

    def versions(self) -> list[int]:
        return [v.version for v in self.registry.list_versions("bc")]


def gone(pid: int | None, *, within_s: float = 10.0) -> bool:
    """Whether the process has exited (and been reaped), waiting for it up to `within_s`."""
    assert pid is not None
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[Bench]:
    with open_registry(tmp_path) as registry:
        bench = Bench(tmp_path, registry)
        try:
            yield bench
        finally:  # never leave a hanging job process behind a failed test
            with registry.db.read() as conn:
                jobs = list_jobs(conn)
            for job in jobs:
                bench.executor.stop(job)


@pytest.mark.slow
def test_a_retrain_refits_the_parents_pipeline_with_its_params_and_registers_it(
    bench: Bench,
) -> None:
    parent = bench.parent(REFERENCE)
    job = bench.submit(parent)
    done = bench.finish(job.id)

    assert done.state == "succeeded", (done.message, bench.log(job.id))
    assert done.progress == 1.0
    assert [j.id for j in bench.finished] == [job.id]  # reported once, by the pass that saw it
    result = done.result
    assert result["rows"] == {"train": 455, "holdout": 114}  # the newest 20% held out
    new = bench.registry.get_version("bc", int(result["version"]))
    assert new.version == 2
    assert new.parent_version == 1
    assert new.params == parent.params == PARAMS
    received = json.loads(bench.received.read_text())
    assert received["params"] == PARAMS  # exactly what the parent was registered with
    assert received["columns"] == [*Signature.from_dict(parent.signature).names, "target"]
    assert received["rows"] == 455
    assert new.pipeline == parent.pipeline
    assert new.tags == {"team": "risk", "retrained_from": "1"}
    assert new.created_by == f"job:{job.id}"
    assert new.training is not None  # baseline statistics for drift
    lineage = new.lineage
    assert lineage["job"] == job.id
    assert lineage["trigger"] == "manual"
    assert lineage["trigger_detail"] == {"reason": "test"}
    assert lineage["data_fingerprint"] == result["data_fingerprint"]
    assert lineage["rows"] == result["rows"]
    assert lineage["parent_metrics"] == result["parent_metrics"]
    assert new.metrics == result["metrics"]
    assert result["metrics"]["accuracy"] > 0.85
    assert result["parent_metrics"]["accuracy"] > 0.85

    def steps(record: VersionRecord) -> dict[str, Any]:
        with bench.registry.materialized(record) as path:
            model = joblib.load(path)
        return {name: step.get_params() for name, step in model.steps}

    assert steps(new) == steps(parent)
    log = bench.log(job.id)
    for stage in ("loading data", "training on 455 rows", "evaluating on 114 held-out rows",
                  "registering", "succeeded: registered bc:2"):  # fmt: skip
        assert stage in log


@pytest.mark.slow
def test_a_pipeline_that_raises_fails_the_job_and_registers_nothing(bench: Bench) -> None:
    job = bench.submit(bench.parent(RAISES))
    done = bench.finish(job.id)

    assert done.state == "failed"
    assert done.message == "the pipeline raised ValueError: the data looks wrong"
    assert bench.versions() == [1]
    log = bench.log(job.id)
    assert "Traceback (most recent call last)" in log
    assert 'raise ValueError("the data looks wrong")' in log
    assert gone(done.pid)
    assert bench.executor.exit_code(done) == 1


@pytest.mark.slow
def test_a_hanging_pipeline_is_stopped_when_the_job_times_out(bench: Bench) -> None:
    job = bench.submit(bench.parent(HANGS), timeout_s=1.0)
    fitting = bench.fitting(job.id)
    done = bench.finish(job.id)

    assert done.state == "failed"
    assert done.message == "timed out after 1 s"
    assert gone(fitting.pid)
    assert bench.versions() == [1]


@pytest.mark.slow
def test_a_cancelled_job_is_stopped_and_registers_nothing(bench: Bench) -> None:
    job = bench.submit(bench.parent(HANGS))
    fitting = bench.fitting(job.id)
    with bench.db.write() as conn:
        request_cancel(conn, job.id)
    done = bench.finish(job.id)

    assert done.state == "cancelled"
    assert done.message == "cancelled by request"
    assert gone(fitting.pid)
    assert bench.versions() == [1]


@pytest.mark.slow
def test_a_job_out_of_the_supervisors_reach_honours_a_cancel_itself(bench: Bench) -> None:
    job = bench.submit(bench.parent(HANGS))
    fitting = bench.fitting(job.id)
    with bench.db.write() as conn:
        request_cancel(conn, job.id)
    done = bench.until(job.id, lambda j: not j.active, supervising=False)  # its heartbeat

    assert done.state == "cancelled"
    assert done.message == "cancelled by request"
    assert gone(fitting.pid)
    assert bench.executor.exit_code(done) == 128 + signal.SIGTERM
    assert bench.versions() == [1]


@pytest.mark.slow
def test_a_killed_job_process_fails_the_job_naming_how_it_ended(bench: Bench) -> None:
    job = bench.submit(bench.parent(HANGS))
    fitting = bench.fitting(job.id)
    assert fitting.pid is not None
    os.kill(fitting.pid, signal.SIGKILL)
    done = bench.finish(job.id)

    assert done.state == "failed"
    assert done.message.startswith("the job process was killed by SIGKILL; its log ends:")
    assert "fitting for ever" in done.message
    assert bench.versions() == [1]


@pytest.mark.slow
def test_a_pipeline_returning_no_model_fails_the_job(bench: Bench) -> None:
    job = bench.submit(bench.parent(NOT_A_MODEL))
    done = bench.finish(job.id)

    assert done.state == "failed"
    assert done.message == (
        "the pipeline returned a dict, not a scikit-learn estimator with predict; "
        "fit must return the fitted model"
    )
    assert bench.versions() == [1]


@pytest.mark.slow
def test_too_few_rows_fail_the_job_before_training(bench: Bench) -> None:
    job = bench.submit(bench.parent(REFERENCE), min_rows=1000)
    done = bench.finish(job.id)

    assert done.state == "failed"
    assert done.message == (
        f"too few rows: the training data has {ROWS}, at least 1000 are needed (min_rows)"
    )
    assert not bench.received.exists()  # the pipeline never ran
    assert bench.versions() == [1]


@pytest.mark.slow
def test_a_job_cancelled_before_its_process_claims_it_is_left_alone(bench: Bench) -> None:
    job = bench.submit(bench.parent(REFERENCE))
    bench.supervise()  # launched
    with bench.db.write() as conn:
        request_cancel(conn, job.id)
    launched = bench.job(job.id)
    assert gone(launched.pid, within_s=DEADLINE_S)  # it starts, finds nothing to do, exits
    assert bench.executor.exit_code(launched) == 0
    assert "no longer queued" in bench.log(job.id)
    assert bench.job(job.id).state == "cancelled"


@pytest.mark.slow
def test_a_job_started_by_an_earlier_server_is_still_watched_and_stopped(bench: Bench) -> None:
    job = bench.submit(bench.parent(HANGS))
    fitting = bench.fitting(job.id)
    assert fitting.pid is not None
    restarted = LocalExecutor(bench.root / "jobs", {})  # knows the job only by its row

    assert restarted.alive(fitting) is True
    # a pid now held by a process started after the job did, or by another job, is not it
    assert not job_process(fitting.pid, replace(fitting, started_at=now() - timedelta(hours=1)))
    assert not job_process(fitting.pid, replace(fitting, id=fitting.id + 1))
    assert Elsewhere(bench.root).alive(fitting) is None
    restarted.stop(fitting)
    assert gone(fitting.pid)
    assert restarted.alive(fitting) is False


def test_a_job_asked_to_cancel_stops_at_its_next_stage(bench: Bench) -> None:
    job = bench.submit(bench.parent(REFERENCE))
    with bench.db.write() as conn:
        update_job(conn, job, state="running", started_at=now())
        request_cancel(conn, job.id)
    claimed = bench.job(job.id)
    run = RetrainJob(
        claimed,
        registry=bench.registry,
        work_dir=bench.root,
        log_root=bench.root,
        access=DataAccess.unlimited(),
    )

    with pytest.raises(JobStopped, match="cancelled by request"):
        run.stage(0.9, "registering")
    assert (bench.job(job.id).state, bench.job(job.id).message) == (
        "cancelled",
        "cancelled by request",
    )


# -- saving in the parent's flavor ---------------------------------------------------------


def _fitted(kind: str) -> Any:
    """A small fitted model: the reference sklearn pipeline, or an XGBoost or LightGBM model
    made through its scikit-learn API (`classifier`) or natively (`booster`)."""
    if kind == "sklearn":
        return sklearn_pipeline()
    features, target = breast_cancer()
    rows, labels = features.to_numpy()[:200], target.to_numpy()[:200]
    library, _, api = kind.partition("-")
    if library == "xgboost":
        xgb = pytest.importorskip("xgboost")
        if api == "classifier":
            return xgb.XGBClassifier(n_estimators=5, max_depth=2).fit(rows, labels)
        data = xgb.DMatrix(rows, label=labels)
        return xgb.train({"objective": "binary:logistic", "max_depth": 2}, data, 5)
    lgb = pytest.importorskip("lightgbm")
    if api == "classifier":
        return lgb.LGBMClassifier(n_estimators=5, verbose=-1).fit(rows, labels)
    params = {"objective": "binary", "verbose": -1}
    return lgb.train(params, lgb.Dataset(rows, label=labels), num_boost_round=5)


@pytest.mark.parametrize(
    ("flavor", "kind", "allow_pickle", "suffix"),
    [
        ("sklearn", "sklearn", True, ".joblib"),
        ("sklearn", "sklearn", False, ".skops"),
        ("xgboost", "xgboost-classifier", True, ".json"),
        ("xgboost", "xgboost-booster", True, ".json"),
        ("lightgbm", "lightgbm-classifier", True, ".txt"),
        ("lightgbm", "lightgbm-booster", True, ".txt"),
    ],
)
def test_a_fitted_model_is_saved_in_a_format_its_flavor_loads(
    tmp_path: Path, flavor: str, kind: str, allow_pickle: bool, suffix: str
) -> None:
    path = save_model(_fitted(kind), flavor, tmp_path, allow_pickle=allow_pickle)

    assert path.suffix == suffix
    features, target = breast_cancer()
    loaded = get_flavor(flavor).load(path)
    answer = loaded.predict(features if loaded.wants_frame else features.to_numpy())
    assert (answer.values == target.to_numpy()).mean() > 0.85


def test_only_models_of_a_retrainable_flavor_are_saved(tmp_path: Path) -> None:
    with pytest.raises(JobFailed, match=r"^onnx versions cannot be retrained; retraining "
                       r"supports sklearn, xgboost, lightgbm$"):  # fmt: skip
        save_model(sklearn_pipeline(), "onnx", tmp_path, allow_pickle=True)
    with pytest.raises(JobFailed, match="returned a LogisticRegression, not a fitted estimator"):
        save_model(LogisticRegression(), "sklearn", tmp_path, allow_pickle=True)
    with pytest.raises(JobFailed, match="returned a Pipeline, not an XGBoost model"):
        save_model(sklearn_pipeline(), "xgboost", tmp_path, allow_pickle=True)
    with pytest.raises(JobFailed, match="returned None, not a LightGBM model"):
        save_model(None, "lightgbm", tmp_path, allow_pickle=True)


# -- supervise with an executor that runs nothing ------------------------------------------


class Elsewhere:
    """An executor whose jobs run out of its sight (another host): it cannot tell."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.started: list[int] = []
        self.stopped: list[int] = []

    def start(self, job: JobRecord) -> Launched:
        self.started.append(job.id)
        return Launched("worker-7", None)

    def alive(self, job: JobRecord) -> bool | None:
        return None

    def exit_code(self, job: JobRecord) -> int | None:
        return None

    def stop(self, job: JobRecord) -> None:
        self.stopped.append(job.id)

    def log_path(self, job_id: int) -> Path:
        return self.root / f"{job_id}.log"


def test_a_job_whose_process_never_claims_it_fails_after_a_minute(bench: Bench) -> None:
    job = bench.submit(bench.parent(REFERENCE))
    executor = Elsewhere(bench.root)
    assert supervise(bench.db, executor) == []
    assert supervise(bench.db, executor) == []  # launched once only
    assert executor.started == [job.id]
    launched = bench.job(job.id)
    assert (launched.state, launched.host) == ("queued", "worker-7")

    later = now() + timedelta(seconds=61)
    [done] = supervise(bench.db, executor, now=later)
    assert done.state == "failed"
    assert done.message == "the job process did not start within 60 s"
    assert executor.stopped == [job.id]


def test_a_running_job_silent_on_another_host_is_lost(bench: Bench) -> None:
    job = bench.submit(bench.parent(REFERENCE))
    beat = now()
    with bench.db.write() as conn:
        update_job(conn, job, state="running", host="worker-7", pid=4242, started_at=beat,
                   heartbeat_at=beat)  # fmt: skip
    executor = Elsewhere(bench.root)
    assert supervise(bench.db, executor, now=beat + timedelta(seconds=30)) == []

    [done] = supervise(bench.db, executor, now=beat + timedelta(seconds=61))
    assert done.state == "failed"
    assert done.message == (
        f"lost: no heartbeat from host worker-7 since {beat.isoformat(timespec='seconds')}"
    )


def test_child_env_points_a_job_process_at_the_same_stores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(
        home=tmp_path / "home", allow_pickle=False, data_roots="/srv/data", data_urls="s3://b/p"
    )
    for name, value in child_env(settings).items():
        if name.startswith("TURNOUT_"):
            monkeypatch.setenv(name, value)
    seen = Settings()
    assert (seen.home, seen.db_url, seen.artifacts) == (
        settings.home,
        settings.db_url,
        settings.artifacts,
    )
    assert seen.allow_pickle is False
    assert (seen.data_roots, seen.data_urls) == ("/srv/data", "s3://b/p")
