"""Retraining end to end in a real server: drifted traffic is noticed by the policy's drift
trigger, a retrain job runs the registered pipeline in its own process on the logged
traffic and its actuals, and the new version walks through a rollout into production."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import orjson
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tests.fixtures.models import breast_cancer
from tests.fixtures.server import LiveServer
from tests.fixtures.traffic import Traffic

pytestmark = pytest.mark.server

PIPELINE = """
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def fit(data, params):
    target = data.attrs["target"]
    model = make_pipeline(StandardScaler(), LogisticRegression(C=float(params["C"]), max_iter=2000))
    return model.fit(data.drop(columns=[target]), data[target])
"""

SPEC = """
deployment: drift-prod
model: drift
version: 1
rollout:
  warmup: {min_requests: 30, timeout_s: 120}
  challenge: {steps: [50], metric: error_rate, margin: -0.01, min_samples: 60,
              step_timeout_s: 120}
  bake: {duration_s: 2}
retrain:
  data: {log: 1h}
  target: actual
  triggers: {drifted_features: 3, window: 1h, min_rows: 100}
  cooldown: 1h
  check_every: 1s
  holdout_fraction: 0.2
  min_rows: 100
"""

DRIFTED = ("mean area", "worst area", "area error", "mean perimeter", "worst perimeter")
"""Columns whose units change (a recalibrated scanner): every value x1.8."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(
        tmp_path_factory.mktemp("retrain") / "home",
        env={
            "TURNOUT_CONTROLLER_INTERVAL_MS": "300",
            "TURNOUT_LOG_FLUSH_MS": "200",
            "TURNOUT_DATA_ROOTS": str(tmp_path_factory.getbasetemp()),
        },
    ).start()
    yield live
    live.stop()


def drifted() -> tuple[pd.DataFrame, pd.Series]:
    features, target = breast_cancer()
    shifted = features.copy()
    for column in DRIFTED:
        shifted[column] = shifted[column] * 1.8
    return shifted, target


def wait(check: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def test_drifted_traffic_is_retrained_rolled_out_and_promoted(
    server: LiveServer, tmp_path: Path
) -> None:
    features, target = breast_cancer()
    train = features.assign(actual=target)
    data = tmp_path / "train.csv"
    train.to_csv(data, index=False)
    pipeline = tmp_path / "train.py"
    pipeline.write_text(PIPELINE)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    joblib.dump(model.fit(features, target), tmp_path / "model.joblib")
    env = {**server.env, "TURNOUT_TOKEN": server.token}

    def turnout(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([sys.executable, "-m", "turnout", *args], env=env,
                              capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done

    turnout("models", "register", "drift", str(tmp_path / "model.joblib"), "--flavor", "sklearn",
            "--param", "C=1.0", "--training-data", str(data),
            "--target", "actual", "--pipeline", str(pipeline))  # fmt: skip
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    turnout("apply", "-f", str(spec))
    shown = orjson.loads(turnout("retrain-policy", "show", "drift-prod", "--json").stdout)
    assert shown["policy"]["triggers"]["drifted_features"] == 3

    rows, truth = drifted()
    with server.client() as client:
        ids = []
        for start in range(0, 300, 50):
            answer = client.predict("drift-prod", rows.iloc[start : start + 50].to_numpy().tolist())
            ids += answer["prediction_ids"]
        report = client.post_actuals(
            "drift-prod",
            [
                {"prediction_id": i, "actual": int(y)}
                for i, y in zip(ids, truth.iloc[:300], strict=True)
            ],
        )
        assert report["accepted"] == 300

        jobs = wait(lambda: client.jobs(deployment="drift-prod"), 60, "the drift trigger")
        assert jobs[0]["trigger"] == "drift"
        job = wait(
            lambda: (j := client.job(jobs[0]["id"]))["state"] in ("succeeded", "failed") and j,
            180,
            "the retrain job",
        )
        assert job["state"] == "succeeded", (job["message"], client.job_logs(job["id"]))
        new = int(job["result"]["version"])
        assert new == 2
        handoff = wait(lambda: client.job(job["id"])["result"].get("handoff"), 30, "the hand-off")
        assert handoff["action"] == "rollout"
        with Traffic(server.url, "drift-prod", rows.to_numpy().tolist()) as traffic:
            rollout = wait(
                lambda: (
                    (r := client.rollout_status("drift-prod"))["state"]
                    not in ("running", "waiting_approval")
                    and r
                ),
                240,
                "the rollout of the retrained version",
            )
        assert rollout["version"] == new
        assert rollout["state"] == "succeeded", rollout["reason"]
        assert client.show_deployment("drift-prod")["champion"] == new
        assert traffic.failed == 0

        version = client.show_version("drift", new)
        assert version["params"] == {"C": "1.0"}  # exactly the parent's
        assert version["parent_version"] == 1
        assert version["lineage"]["job"] == job["id"]
        assert version["lineage"]["trigger"] == "drift"
        assert version["lineage"]["data_fingerprint"] == job["result"]["data_fingerprint"]
        assert version["pipeline"] == client.show_version("drift", 1)["pipeline"]
        # the retrained model learned the new units: better on drifted rows than its parent
        holdout = job["result"]
        assert holdout["metrics"]["accuracy"] >= holdout["parent_metrics"]["accuracy"]

    # the retrained champion retrains in turn (by hand): the chain grows by one link
    again = orjson.loads(turnout("retrain", "drift-prod", "--wait", "--json").stdout)
    assert again["state"] == "succeeded", again["message"]
    assert again["parent_version"] == 2
    chain = orjson.loads(turnout("models", "show", "drift:3", "--lineage", "--json").stdout)
    assert [v["version"] for v in chain] == [3, 2, 1]
    assert [v["lineage"].get("trigger") for v in chain] == ["manual", "drift", None]
    assert [v["parent_version"] for v in chain] == [2, 1, None]
    assert all(v["params"] == {"C": "1.0"} for v in chain)
    assert chain[0]["lineage"]["job"] == again["id"]
    listed = orjson.loads(turnout("jobs", "list", "--deployment", "drift-prod", "--json").stdout)
    assert [j["id"] for j in listed] == [again["id"], job["id"]]
    logs = turnout("jobs", "logs", str(job["id"])).stdout
    assert "training on" in logs
    table = turnout("models", "show", "drift:3", "--lineage").stdout
    assert "drift" in table
    assert np.isfinite(float(holdout["metrics"]["accuracy"]))


CRASHES = """
def fit(data, params):
    raise RuntimeError("the feature table is empty")
"""


def test_the_cli_names_what_is_wrong_and_a_crashing_retrain_changes_nothing(
    server: LiveServer, tmp_path: Path
) -> None:
    features, target = breast_cancer()
    data = tmp_path / "train.csv"
    features.assign(target=target).to_csv(data, index=False)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    joblib.dump(model.fit(features, target), tmp_path / "model.joblib")
    crashes = tmp_path / "crashes.py"
    crashes.write_text(CRASHES)
    env = {**server.env, "TURNOUT_TOKEN": server.token}

    def turnout(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "turnout", *args], env=env,
                              capture_output=True, text=True, timeout=180, check=False)  # fmt: skip

    register = ["models", "register", "fragile", str(tmp_path / "model.joblib"), "--flavor",
                "sklearn", "--training-data", str(data), "--target", "target"]  # fmt: skip
    assert turnout(*register).returncode == 0  # fragile:1, no pipeline
    assert turnout(*register, "--pipeline", str(crashes)).returncode == 0  # fragile:2
    assert turnout("deployments", "create", "fragile-prod", "--model", "fragile",
                   "--version", "1").returncode == 0  # fmt: skip
    policy = tmp_path / "policy.yaml"
    policy.write_text("data: {log: 7d}\n")

    refused = turnout("retrain-policy", "set", "fragile-prod", "-f", str(policy))
    assert refused.returncode == 1
    assert "without a training pipeline" in refused.stderr
    no_policy = turnout("retrain", "fragile-prod")
    assert no_policy.returncode == 1
    assert "no retrain policy" in no_policy.stderr
    policy.write_text("data: {log: 7d}\ntriggers: {drift_psi: -1}\n")
    with server.client() as client:
        client.promote("fragile-prod", version=2)
    invalid = turnout("retrain-policy", "set", "fragile-prod", "-f", str(policy))
    assert invalid.returncode == 1
    assert "policy.triggers.drift_psi" in invalid.stderr
    missing = turnout("jobs", "show", "99999")
    assert missing.returncode == 1
    assert "job 99999 not found" in missing.stderr

    crashed = turnout("retrain", "fragile-prod", "--data", str(data), "--wait", "--json")
    assert crashed.returncode == 1, crashed.stderr
    job = orjson.loads(crashed.stdout)
    assert job["state"] == "failed"
    assert "RuntimeError: the feature table is empty" in job["message"]
    logs = turnout("jobs", "logs", str(job["id"])).stdout
    assert "Traceback" in logs
    assert "the feature table is empty" in logs
    done = turnout("jobs", "cancel", str(job["id"]))
    assert done.returncode == 1
    assert "already failed" in done.stderr
    with server.client() as client:
        assert [v["version"] for v in client.show_model("fragile")["version_list"]] == [1, 2]
        assert client.show_deployment("fragile-prod")["champion"] == 2
    for result in (refused, no_policy, invalid, missing, crashed, done):
        assert "Traceback" not in result.stderr
