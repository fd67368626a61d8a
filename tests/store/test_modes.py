"""Everything under a served home is its user's alone: a 0700 home, no group or other bits on
any file or folder, whatever umask the operator's shell had."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path
from typing import Any

import joblib
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tests.fixtures.models import breast_cancer
from tests.fixtures.server import LiveServer

pytestmark = pytest.mark.server

BLOBS = "home/artifacts/sha256/"

PIPELINE = """
from sklearn.linear_model import LogisticRegression


def fit(data, params):
    target = data.attrs["target"]
    return LogisticRegression(max_iter=200).fit(data.drop(columns=[target]), data[target])
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home after the whole lifecycle: registered (with training data and a pipeline),
    deployed, predicted, logged, actuals posted, retrained by a job; the server stopped."""
    tmp_path = tmp_path_factory.mktemp("modes")
    previous = os.umask(0o002)  # a permissive shell: the server must not depend on it
    try:
        server = LiveServer(
            tmp_path / "home",
            env={"TURNOUT_LOG_FLUSH_MS": "200", "TURNOUT_CONTROLLER_INTERVAL_MS": "300"},
        ).start()
    finally:
        os.umask(previous)
    try:
        live_cycle(server, tmp_path)
    finally:
        server.stop()  # everything buffered reaches disk
    (server.home / "server.log").unlink()  # the test's capture of its output, not state
    return server.home


def wait(check: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def shared(home: Path) -> list[str]:
    """Every path under `home` (itself included) that its group or others may use."""
    found = []
    for folder, _dirs, files in os.walk(home):
        for path in [Path(folder), *(Path(folder) / name for name in files)]:
            mode = path.lstat().st_mode
            if not stat.S_ISLNK(mode) and mode & 0o077:
                found.append(f"{path.relative_to(home.parent)} {stat.filemode(mode)}")
    return found


def live_cycle(server: LiveServer, tmp_path: Path) -> None:
    features, target = breast_cancer()
    data = tmp_path / "train.csv"
    features.assign(actual=target).to_csv(data, index=False)
    pipeline = tmp_path / "train.py"
    pipeline.write_text(PIPELINE)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    joblib.dump(model.fit(features, target), tmp_path / "model.joblib")
    rows = features.iloc[:200].to_numpy().tolist()

    with server.client() as client:
        client.register("bc", tmp_path / "model.joblib", flavor="sklearn", training_data=data,
                        target="actual", pipeline=str(pipeline))  # fmt: skip
        client.create_deployment("bc-prod", model="bc", version=1)
        ids: list[str] = []
        for start in range(0, len(rows), 50):
            ids += client.predict("bc-prod", rows[start : start + 50])["prediction_ids"]
        client.post_actuals(
            "bc-prod",
            [{"prediction_id": i, "actual": int(y)} for i, y in zip(ids, target, strict=False)],
        )
        job = client.retrain("bc-prod", data={"log": "1h"})
        done = wait(
            lambda: (j := client.job(job["id"]))["state"] in ("succeeded", "failed") and j,
            180,
            "the retrain job",
        )
        assert done["state"] == "succeeded", (done["message"], client.job_logs(job["id"]))
        assert "training on" in client.job_logs(job["id"])
    wait(lambda: list((server.home / "artifacts" / "log").rglob("*.parquet")), 30, "the log")


def test_a_served_home_is_private_after_the_whole_lifecycle(served: Path) -> None:
    assert stat.S_IMODE(served.stat().st_mode) == 0o700
    assert (served / "turnout.db").exists()
    assert list((served / "jobs").glob("*.log"))
    assert list((served / "artifacts" / "log").rglob("*.parquet"))
    state = [p for p in shared(served) if not p.startswith(BLOBS)]
    assert state == [], "\n".join(state)


def test_artifact_blobs_are_read_only_for_their_user_alone(served: Path) -> None:
    blobs = [p for p in shared(served) if p.startswith(BLOBS)]
    assert blobs == [], "\n".join(blobs)
