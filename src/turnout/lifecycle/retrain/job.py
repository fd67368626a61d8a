"""The retrain job process: `python -m turnout.lifecycle.retrain.job JOB_ID`.

It fits the parent version's pipeline, with the parent's params, on fresh rows, scores the
new model and its parent on the newest rows held out, and registers the new version as its
very last step, so a job that fails or is stopped changes nothing in production. Its stdout
is the job's log; its progress and outcome go to the job's row.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import joblib
import numpy as np
import pandas as pd
import skops.io as sio
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from turnout.errors import Conflict, TurnoutError
from turnout.lifecycle.retrain import ledger
from turnout.lifecycle.retrain.data import TrainingData, load_training_data
from turnout.lifecycle.retrain.policy import DataSource
from turnout.lifecycle.retrain.spec import JobSpec
from turnout.lifecycle.sources import DataAccess
from turnout.monitoring.metrics import classification_metrics, regression_metrics
from turnout.registry.flavors import Prediction, get_flavor
from turnout.registry.optional import optional_import
from turnout.registry.pipelines import load_pipeline
from turnout.registry.service import NewVersion, Registry
from turnout.registry.signature import Signature
from turnout.settings import Settings
from turnout.store.artifacts import open_artifact_store
from turnout.store.db import Database
from turnout.store.jobs import get_job
from turnout.store.records import JobRecord, JobState, VersionRecord
from turnout.types import JSON

HEARTBEAT_S = 5.0
STOPPED_EXIT_CODE = 128 + signal.SIGTERM
MAX_MESSAGE_CHARS = 500


class JobFailed(TurnoutError):
    """Why the job failed, in the one line its message shows."""


class JobStopped(BaseException):
    """SIGTERM, or the job is no longer running in the DB: leave at once and write nothing
    (whoever stopped it records why). Not an Exception, so a pipeline cannot swallow it."""


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


@contextmanager
def _blame(what: str) -> Iterator[None]:
    """Turn anything but a turnout error into JobFailed("{what} TypeName: text")."""
    try:
        yield
    except TurnoutError:
        raise
    except Exception as exc:
        raise JobFailed(f"{what} {type(exc).__name__}: {exc}") from exc


def one_line(exc: BaseException) -> str:
    text = exc.message if isinstance(exc, TurnoutError) else f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())[:MAX_MESSAGE_CHARS]


def say(text: str) -> None:
    """One line of the job's log."""
    print(f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ} {text}", flush=True)


def _summary(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()) or "no scores"


# -- the job -------------------------------------------------------------------------------


class RetrainJob:
    """One claimed (running) job in this process: its stages, heartbeat and outcome."""

    def __init__(
        self,
        job: JobRecord,
        *,
        registry: Registry,
        work_dir: Path,
        log_root: Path,
        access: DataAccess,
    ) -> None:
        self.job = job
        self.access = access
        """Where the job may read training data from (the server's configured roots)."""
        self.spec = JobSpec.from_dict(job.spec)
        self.registry = registry
        self.db = registry.db
        self.work_dir = work_dir
        self.log_root = log_root
        """The prediction log, for a data source of logged traffic."""
        self.registering = False
        """While set, SIGTERM waits: the registration and the final write run to the end."""
        self._beating = threading.Event()
        self._turn = threading.Lock()
        """Held while the heartbeat acts on a cancel, and while registration begins."""

    def execute(self) -> int:
        """Run the job and record its outcome; the process's exit code."""
        signal.signal(signal.SIGTERM, self._on_sigterm)
        heartbeat = threading.Thread(target=self._heartbeat, name="heartbeat", daemon=True)
        heartbeat.start()
        try:
            record = self.run()
        except JobStopped as stop:
            say(f"stopped: {stop}")
            return STOPPED_EXIT_CODE
        except Exception as exc:
            failure: Exception | None = exc
        else:
            failure = None
        finally:  # before the last write, so that no beat sees the job end and signals us
            self._beating.set()
            heartbeat.join(timeout=HEARTBEAT_S)
        if failure is None:
            say(f"succeeded: registered {record.ref}")
            return 0
        if failure.__cause__ is not None or not isinstance(failure, TurnoutError):
            traceback.print_exception(failure, file=sys.stdout)
        message = one_line(failure)
        say(f"failed: {message}")
        self._fail(message)
        return 1

    def run(self) -> VersionRecord:
        spec = self.spec
        if spec.flavor not in SAVERS:
            raise JobFailed(_not_retrainable(spec.flavor))
        parent = self.registry.get_version(spec.model, spec.parent_version)
        say(
            f"job {self.job.id}: retrain {parent.ref} for deployment {spec.deployment} "
            f"(trigger {self.job.trigger}) on {self.job.host}, pid {os.getpid()}"
        )
        self.stage(0.05, "loading data")
        with _blame("loading the training data failed:"):
            data = load_training_data(
                DataSource.model_validate(spec.data),
                columns=list(spec.columns),
                target=spec.target,
                deployment=spec.deployment,
                log_root=self.log_root,
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
        with _blame("loading the pipeline failed:"):
            fit = load_pipeline(spec.pipeline, self.registry.artifacts, self.work_dir)
        started = time.monotonic()
        frame = train.copy()
        frame.attrs["target"] = spec.target  # the pipeline's way to find the label column
        with _blame("the pipeline raised"):
            fitted = fit(frame, dict(spec.params))
        say(f"the pipeline returned {type(fitted).__name__} in {time.monotonic() - started:.1f} s")
        with _blame("saving the fitted model failed:"):
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
        with self._turn:  # from here on a cancel is too late: the job runs to its end
            self.stage(0.9, "registering")
            self.registering = True
        with _blame("registering the new version failed:"):
            record = self.registry.register(new)
        result: dict[str, JSON] = {
            "version": record.version,
            "data_fingerprint": data.fingerprint,
            "rows": rows,
            "metrics": metrics,
            "parent_metrics": parent_metrics,
        }
        self._succeed(record, result)
        return record

    def evaluate(
        self, path: Path, parent: VersionRecord, holdout: pd.DataFrame
    ) -> tuple[dict[str, float], dict[str, float]]:
        """The new model's and the parent's scores on the held-out rows. The new model must
        answer; the parent's scores are left out (with a log line) if it cannot."""
        features, actual = holdout[list(self.spec.columns)], holdout[self.spec.target]
        classes = Signature.from_dict(parent.signature).classes
        with _blame("the new model failed on the held-out rows:"):
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

    # -- the job's row -----------------------------------------------------------------------

    def stage(self, progress: float, message: str) -> None:
        """Record the stage, or end here if the job was ended or a cancel was asked for."""
        say(message)
        try:
            with self.db.write() as conn:
                self.job = ledger.stage(conn, self.job, progress=progress, message=message)
        except Conflict:
            raise JobStopped(f"job {self.job.id} is no longer running") from None
        if not self.job.active:
            raise JobStopped(self.job.message)

    def _succeed(self, record: VersionRecord, result: dict[str, JSON]) -> None:
        try:
            with self.db.write() as conn:
                ledger.succeed(conn, self.job, message=f"registered {record.ref}", result=result)
        except Conflict:
            say(f"registered {record.ref}, but the job was ended meanwhile")

    def _fail(self, message: str) -> None:
        try:
            with self.db.write() as conn:
                ledger.end(conn, self.job, JobState.FAILED, message)
        except Conflict:
            pass  # the supervisor ended it first (cancelled, timed out): its reason stands
        except TurnoutError as exc:
            say(f"could not record the failure: {exc.message}")

    def _heartbeat(self) -> None:
        """Stamp `heartbeat_at`; stop this process when the job was ended elsewhere, and
        honour a cancel request itself (a supervisor on another host cannot signal us)."""
        while not self._beating.wait(HEARTBEAT_S):
            try:
                with self._turn, self.db.write() as conn:
                    job = get_job(conn, self.job.id)
                    over = job.state != JobState.RUNNING
                    if not over and job.cancel_requested and not self.registering:
                        ledger.end(conn, job, JobState.CANCELLED, ledger.CANCELLED_BY_REQUEST)
                        over = True
                    elif not over:
                        ledger.beat(conn, job)
            except TurnoutError as exc:  # a DB hiccup: the next beat tries again
                say(f"heartbeat: {exc.message}")
                continue
            if over:
                os.kill(os.getpid(), signal.SIGTERM)
                return

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        if not self.registering:
            raise JobStopped("SIGTERM")


def claim(db: Database, job_id: int) -> JobRecord | None:
    """Mark the job running by this process, if it is still queued."""
    try:
        with db.write() as conn:
            job = get_job(conn, job_id)
            if job.state != JobState.QUEUED:
                return None
            return ledger.claim(conn, job)
    except Conflict:
        return None


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
            run = RetrainJob(
                job,
                registry=registry,
                work_dir=Path(work),
                log_root=settings.log_root,
                access=DataAccess.from_settings(settings),
            )
            return run.execute()
    finally:
        db.dispose()


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
