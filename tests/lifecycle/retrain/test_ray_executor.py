"""Retrain jobs on a real Ray cluster (`ray start --head` on loopback, started by the test):
a job runs as a Ray job and registers its version; a cancelled one is stopped on the cluster
and changes nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import joblib
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tests.fixtures.models import breast_cancer
from tests.fixtures.server import LiveServer, free_port

pytestmark = [pytest.mark.server, pytest.mark.slow]

PIPELINE = """
import time

from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def fit(data, params):
    time.sleep(float(params.get("sleep_s", "0")))
    target = data.attrs["target"]
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    return model.fit(data.drop(columns=[target]), data[target])
"""


@pytest.fixture(scope="module")
def ray_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    ray = Path(sys.executable).parent / "ray"
    if not ray.exists():
        pytest.fail("ray is missing: pip install 'turnout[ray]' (a dev dependency)")
    folder = tmp_path_factory.mktemp("ray")
    dashboard = free_port()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    start = [
        str(ray), "start", "--head", "--num-cpus", "2", "--disable-usage-stats",
        "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard),
        "--port", str(free_port()), "--ray-client-server-port", str(free_port()),
        "--min-worker-port", "30000", "--max-worker-port", "30200",
        "--temp-dir", str(folder / "t"),
    ]  # fmt: skip
    done = subprocess.run(start, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    try:
        yield f"ray://127.0.0.1:{dashboard}"
    finally:
        subprocess.run([str(ray), "stop", "--force"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(folder / "t", ignore_errors=True)


@pytest.fixture(scope="module")
def server(ray_address: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(
        tmp_path_factory.mktemp("ray-server") / "home",
        env={"TURNOUT_EXECUTOR": ray_address, "TURNOUT_CONTROLLER_INTERVAL_MS": "300"},
    ).start()
    yield live
    live.stop()


def ray_status(address: str, job_id: int) -> str:
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(address.replace("ray://", "http://"))
    return str(client.get_job_status(f"turnout-job-{job_id}").value)


def finished(server: LiveServer, job_id: int, timeout_s: float = 240) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    with server.client() as client:
        while (job := client.job(job_id))["state"] not in ("succeeded", "failed", "cancelled"):
            assert time.monotonic() < deadline, job
            time.sleep(0.5)
    return dict(job)


def deploy(server: LiveServer, folder: Path, name: str, *, sleep_s: float) -> None:
    features, target = breast_cancer()
    folder.mkdir()
    features.assign(label=target).to_csv(folder / "train.csv", index=False)
    (folder / "train.py").write_text(PIPELINE)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    joblib.dump(model.fit(features, target), folder / "model.joblib")
    with server.client() as client:
        client.register(name, folder / "model.joblib", flavor="sklearn",
                        training_data=folder / "train.csv", target="label",
                        pipeline=str(folder / "train.py"),
                        params={"sleep_s": str(sleep_s)})  # fmt: skip
        client.create_deployment(f"{name}-prod", model=name, version=1)


def test_a_retrain_job_runs_on_the_ray_cluster_and_registers_its_version(
    server: LiveServer, ray_address: str, tmp_path: Path
) -> None:
    deploy(server, tmp_path / "quick", "quick", sleep_s=0)
    with server.client() as client:
        data = client.upload_data(tmp_path / "quick" / "train.csv")
        job = client.retrain("quick-prod", data={"path": data["path"]})
    done = finished(server, int(job["id"]))
    assert done["state"] == "succeeded", done
    deadline = time.monotonic() + 60  # the job process writes its end, then exits
    while (status := ray_status(ray_address, int(job["id"]))) in ("PENDING", "RUNNING"):
        assert time.monotonic() < deadline, status
        time.sleep(0.5)
    assert status == "SUCCEEDED"
    with server.client() as client:
        assert [v["version"] for v in client.show_model("quick")["version_list"]] == [1, 2]
        assert "succeeded: registered quick:2" in client.job_logs(int(job["id"]))


def test_a_cancelled_job_is_stopped_on_the_cluster_and_changes_nothing(
    server: LiveServer, ray_address: str, tmp_path: Path
) -> None:
    deploy(server, tmp_path / "slow", "slow", sleep_s=600)
    with server.client() as client:
        data = client.upload_data(tmp_path / "slow" / "train.csv")
        job_id = int(client.retrain("slow-prod", data={"path": data["path"]})["id"])
        deadline = time.monotonic() + 180
        while client.job(job_id)["state"] != "running":
            assert time.monotonic() < deadline, client.job(job_id)
            time.sleep(0.5)
        client.cancel_job(job_id)
    done = finished(server, job_id)
    assert done["state"] == "cancelled", done
    deadline = time.monotonic() + 60
    while ray_status(ray_address, job_id) in ("PENDING", "RUNNING"):
        assert time.monotonic() < deadline, "the Ray job still runs"
        time.sleep(0.5)
    with server.client() as client:
        assert [v["version"] for v in client.show_model("slow")["version_list"]] == [1]
        assert client.show_deployment("slow-prod")["champion"] == 1
