"""The job process: `python -m turnout.lifecycle.retrain.job JOB_ID` runs a retrain job
(here) or a batch scoring job (`lifecycle.batch`), as the job's `kind` says.

A retrain job fits the parent version's pipeline, with the parent's params, on fresh rows,
scores the new model and its parent on the newest rows held out, and registers the new
version as its very last step, so a job that fails or is stopped changes nothing in
production. Its stdout is the job's log; its progress and outcome go to the job's row.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import skops.io as sio
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from turnout.errors import TurnoutError
from turnout.lifecycle.batch import BATCH_KIND, BatchJob
from turnout.lifecycle.retrain.data import TrainingData, load_training_data
from turnout.lifecycle.retrain.policy import DataSource
from turnout.lifecycle.retrain.process import (
    STOPPED_EXIT_CODE,
    JobFailed,
    JobProcess,
    JobStopped,
    blame,
    claim,
    one_line,
    say,
)
from turnout.lifecycle.retrain.spec import JobSpec
from turnout.lifecycle.sources import DataAccess
from turnout.monitoring.metrics import classification_metrics, regression_metrics
from turnout.monitoring.query import LogReader
from turnout.monitoring.remote import RemoteLog, remote_log
from turnout.registry.flavors import Prediction, get_flavor
from turnout.registry.optional import optional_import
from turnout.registry.pipelines import load_pipeline
from turnout.registry.service import NewVersion, Registry
from turnout.registry.signature import Signature
from turnout.settings import Settings
from turnout.store.artifacts import open_artifact_store
from turnout.store.db import Database
from turnout.store.records import JobRecord, VersionRecord
from turnout.types import JSON

# -- saving the fitted model in the parent's flavor ----------------------------------------


def _save_sklearn(model: Any, folder: Path, allow_pickle: bool) -> Path:
    if not callable(getattr(model, "predict", None)) or not hasattr(model, "get_params"):
        raise _not_a(model, "a scikit-learn estimator with predict")
    if isinstance(model, BaseEstimator):
        try:
            check_is_fitted(model)
        except NotFittedError:
            raise _not_a(model, "a fitted estimator") from None
    if allow_pickle:
        joblib.dump(model, path := folder / "model.joblib")
    else:
        sio.dump(model, path := folder / "model.skops")
    return path


def _save_xgboost(model: Any, folder: Path, allow_pickle: bool) -> Path:
    xgb = optional_import("xgboost", "xgboost")
    if not isinstance(model, xgb.XGBModel | xgb.Booster):
        raise _not_a(model, "an XGBoost model (XGBClassifier, XGBRegressor or Booster)")
    model.save_model(str(path := folder / "model.json"))
    return path


def _save_lightgbm(model: Any, folder: Path, allow_pickle: bool) -> Path:
    lgb = optional_import("lightgbm", "lightgbm")
    booster = model.booster_ if isinstance(model, lgb.LGBMModel) else model
    if not isinstance(booster, lgb.Booster):
        raise _not_a(model, "a LightGBM model (LGBMClassifier, LGBMRegressor or Booster)")
    booster.save_model(str(path := folder / "model.txt"))
    return path


def _not_a(model: Any, what: str) -> JobFailed:
    kind = type(model).__name__
    returned = "None" if model is None else f"a{'n' * (kind[0] in 'AEIOUaeiou')} {kind}"
    return JobFailed(
        f"the pipeline returned {returned}, not {what}; fit must return the fitted model"
    )


SAVERS: dict[str, Callable[[Any, Path, bool], Path]] = {
    "sklearn": _save_sklearn,
    "xgboost": _save_xgboost,
    "lightgbm": _save_lightgbm,
}
"""How a fitted model is saved, per retrainable flavor, in a format that flavor loads."""


def save_model(model: Any, flavor: str, folder: Path, *, allow_pickle: bool) -> Path:
    """The fitted model saved in `folder` so that `flavor` loads it; JobFailed when it is
    not a model of that flavor. sklearn uses joblib, or skops when pickle is refused."""
    if flavor not in SAVERS:
        raise JobFailed(_not_retrainable(flavor))
    folder.mkdir(parents=True, exist_ok=True)
    return SAVERS[flavor](model, folder, allow_pickle)


def _not_retrainable(flavor: str) -> str:
    return f"{flavor} versions cannot be retrained; retraining supports {', '.join(SAVERS)}"


# -- the pieces of a run -------------------------------------------------------------------


def split(frame: pd.DataFrame, fraction: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The oldest rows train; the newest `fraction` of them (the tail) are held out."""
    holdout = min(round(len(frame) * fraction), len(frame) - 1)
    cut = len(frame) - max(holdout, 0)
    return frame.iloc[:cut].reset_index(drop=True), frame.iloc[cut:].reset_index(drop=True)


def scores(
    answer: Prediction, actual: pd.Series, classes: tuple[JSON, ...] | None
) -> dict[str, float]:
    """The metric values of one model's answers on the held-out rows (intervals dropped)."""
    if classes is not None:
        report = classification_metrics(
            actual.tolist(), np.asarray(answer.values).tolist(), answer.probabilities, list(classes)
        )
    else:
        report = regression_metrics(
            actual.to_numpy(dtype=np.float64), np.asarray(answer.values, dtype=np.float64)
        )
    return {k: float(v["value"]) for k, v in report.items() if isinstance(v, dict)}


def _summary(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()) or "no scores"


# -- the job -------------------------------------------------------------------------------


class RetrainJob(JobProcess):
    """A claimed retrain job: fit, evaluate, register as the very last step."""

    def __init__(
        self,
        job: JobRecord,
        *,
        registry: Registry,
        work_dir: Path,
        log_root: Path,
        access: DataAccess,
        remote: RemoteLog | None = None,
        retention_days: int | None = None,
    ) -> None:
        super().__init__(job, db=registry.db)
        self.access = access
        """Where the job may read training data from (the server's configured roots)."""
        self.spec = JobSpec.from_dict(job.spec)
        self.registry = registry
        self.work_dir = work_dir
        self.log_root = log_root
        """The prediction log, for a data source of logged traffic."""
        self.log = LogReader(log_root, remote=remote, retention_days=retention_days)

    def run(self) -> str:
        return f"registered {self.register().ref}"

    def register(self) -> VersionRecord:
        spec = self.spec
        if spec.flavor not in SAVERS:
            raise JobFailed(_not_retrainable(spec.flavor))
        parent = self.registry.get_version(spec.model, spec.parent_version)
        say(
            f"job {self.job.id}: retrain {parent.ref} for deployment {spec.deployment} "
            f"(trigger {self.job.trigger}) on {self.job.host}, pid {os.getpid()}"
        )
        self.stage(0.05, "loading data")
        with blame("loading the training data failed:"):
            data = load_training_data(
                DataSource.model_validate(spec.data),
                columns=list(spec.columns),
                target=spec.target,
                deployment=spec.deployment,
                log=self.log,
                access=self.access,
            )
        say(f"{data.rows} rows, fingerprint {data.fingerprint}")
        if data.rows < spec.min_rows:
            raise JobFailed(
                f"too few rows: the training data has {data.rows}, at least {spec.min_rows} "
                "are needed (min_rows)"
            )
        train, holdout = split(data.frame, spec.holdout_fraction)
        self.stage(0.2, f"training on {len(train)} rows ({len(holdout)} held out)")
        with blame("loading the pipeline failed:"):
            fit = load_pipeline(spec.pipeline, self.registry.artifacts, self.work_dir)
        started = time.monotonic()
        frame = train.copy()
        frame.attrs["target"] = spec.target  # the pipeline's way to find the label column
        with blame("the pipeline raised"):
            fitted = fit(frame, dict(spec.params))
        say(f"the pipeline returned {type(fitted).__name__} in {time.monotonic() - started:.1f} s")
        with blame("saving the fitted model failed:"):
            path = save_model(
                fitted,
                spec.flavor,
                self.work_dir / "model",
                allow_pickle=self.registry.allow_pickle,
            )
        metrics: dict[str, float] = {}
        parent_metrics: dict[str, float] = {}
        if len(holdout):
            self.stage(0.7, f"evaluating on {len(holdout)} held-out rows")
            metrics, parent_metrics = self.evaluate(path, parent, holdout)
        table = self.work_dir / "training.parquet"
        train.to_parquet(table, index=False)
        rows = {"train": len(train), "holdout": len(holdout)}
        new = self.new_version(path, table, parent, data, rows, parent_metrics, metrics)
        self.last_step(0.9, "registering")
        with blame("registering the new version failed:"):
            record = self.registry.register(new)
        result: dict[str, JSON] = {
            "version": record.version,
            "data_fingerprint": data.fingerprint,
            "rows": rows,
            "metrics": metrics,
            "parent_metrics": parent_metrics,
        }
        self.succeed(f"registered {record.ref}", result)
        return record

    def evaluate(
        self, path: Path, parent: VersionRecord, holdout: pd.DataFrame
    ) -> tuple[dict[str, float], dict[str, float]]:
        """The new model's and the parent's scores on the held-out rows. The new model must
        answer; the parent's scores are left out (with a log line) if it cannot."""
        features, actual = holdout[list(self.spec.columns)], holdout[self.spec.target]
        classes = Signature.from_dict(parent.signature).classes
        with blame("the new model failed on the held-out rows:"):
            model = get_flavor(self.spec.flavor).load(path)
            answer = model.predict(features if model.wants_frame else features.to_numpy())
            own = model.facts().classes or classes
            metrics = scores(answer, actual, own if classes is not None else None)
        parent_metrics: dict[str, float] = {}
        try:
            servable = self.registry.load(parent)
            numeric = servable.signature.numeric
            rows = features.to_numpy(dtype=np.float64 if numeric else object)
            parent_metrics = scores(servable.predict(rows), actual, classes)
        except Exception as exc:  # the parent's scores are a comparison, not a requirement
            say(f"{parent.ref} could not be scored: {one_line(exc)}")
        say(f"new model: {_summary(metrics)}; {parent.ref}: {_summary(parent_metrics)}")
        return metrics, parent_metrics

    def new_version(
        self,
        path: Path,
        table: Path,
        parent: VersionRecord,
        data: TrainingData,
        rows: dict[str, int],
        parent_metrics: dict[str, float],
        metrics: dict[str, float],
    ) -> NewVersion:
        job, spec = self.job, self.spec
        lineage: dict[str, JSON] = {
            "job": job.id,
            "trigger": job.trigger,
            "trigger_detail": job.trigger_detail,
            "data_fingerprint": data.fingerprint,
            "data": data.sources,
            "rows": rows,
            "parent_metrics": parent_metrics,
        }
        return NewVersion(
            model=spec.model,
            source=path,
            flavor=spec.flavor,
            metrics=metrics,
            params=dict(spec.params),
            tags={**parent.tags, **spec.tags, "retrained_from": str(spec.parent_version)},
            description=f"retrained from {parent.ref} by job {job.id} ({job.trigger})",
            training_data=table,
            target=spec.target,
            parent_version=spec.parent_version,
            lineage=lineage,
            pipeline=spec.pipeline,
            actor=f"job:{job.id}",
        )


def run_job(job_id: int, settings: Settings) -> int:
    db = Database.from_url(settings.db_url, busy_timeout_ms=settings.sqlite_busy_timeout_ms)
    try:
        job = claim(db, job_id)
        if job is None:
            say(f"job {job_id} is no longer queued; nothing to do")
            return 0
        jobs_dir = settings.cache_dir / "jobs"
        jobs_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=f"{job_id}-", dir=jobs_dir) as work:
            registry = Registry(
                db,
                open_artifact_store(settings.artifacts),
                work_dir=Path(work) / "load",
                allow_pickle=settings.allow_pickle,
            )
            return _process(job, registry, Path(work), settings).execute()
    finally:
        db.dispose()


def _process(job: JobRecord, registry: Registry, work: Path, settings: Settings) -> JobProcess:
    """The job's kind of process."""
    access = DataAccess.from_settings(settings)
    remote = remote_log(settings, check=False)  # an outage fails the step that needs it
    if job.kind == BATCH_KIND:
        return BatchJob(
            job, registry=registry, log_root=settings.log_root, access=access, remote=remote
        )
    return RetrainJob(
        job,
        registry=registry,
        work_dir=work,
        log_root=settings.log_root,
        access=access,
        remote=remote,
        retention_days=settings.log_retention_days,
    )


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not args[0].isdigit():
        print("usage: python -m turnout.lifecycle.retrain.job JOB_ID", file=sys.stderr)
        return 2
    try:
        return run_job(int(args[0]), Settings())
    except JobStopped as stop:  # SIGTERM while recording a failure
        say(f"stopped: {stop}")
        return STOPPED_EXIT_CODE
    except TurnoutError as exc:
        say(f"job {args[0]}: {exc.message}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
