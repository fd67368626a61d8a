"""Registering models from a real MLflow tracking server and registry (`mlflow server` on
loopback) into a real turnout server, by alias, by version and by run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import mlflow
import mlflow.sklearn
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from tests.fixtures.server import LiveServer, free_port
from turnout.client import ApiError
from turnout.mlflow_import import MlflowImportError, downloaded

pytestmark = [
    pytest.mark.server,
    pytest.mark.slow,
    # mlflow warns about its own type hints when it builds a signature.
    pytest.mark.filterwarnings("ignore:.*Any type hint is inferred as AnyType:UserWarning"),
]

MLFLOW = Path(sys.executable).with_name("mlflow")


class MlflowServer:
    """`mlflow server` with a SQLite backend and proxied artifacts, in its own session."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log = folder / "mlflow.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 90.0) -> MlflowServer:
        command = [
            str(MLFLOW), "server",
            "--backend-store-uri", f"sqlite:///{self.folder / 'mlflow.db'}",
            "--artifacts-destination", str(self.folder / "artifacts"),
            "--host", "127.0.0.1", "--port", self.url.rsplit(":", 1)[1], "--workers", "1",
        ]  # fmt: skip
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mlflow server exited:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"mlflow server did not answer /health:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@dataclass(frozen=True)
class Logged:
    """One sklearn model logged to MLflow, registered as `churn` version 1, alias champion."""

    model: LogisticRegression
    features: pd.DataFrame
    run_id: str
    version: str


@pytest.fixture(scope="module")
def tracking(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = MlflowServer(tmp_path_factory.mktemp("mlflow")).start()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", server.url)
        yield server.url
    server.stop()


@pytest.fixture(scope="module")
def logged(tracking: str) -> Logged:
    features, target = load_iris(return_X_y=True, as_frame=True)
    model = LogisticRegression(max_iter=1000).fit(features, target)
    with mlflow.start_run() as run:  # MLFLOW_TRACKING_URI names the server
        info = mlflow.sklearn.log_model(
            model, name="model", registered_model_name="churn", input_example=features[:2]
        )
    version = str(info.registered_model_version)
    MlflowClient(tracking_uri=tracking).set_registered_model_alias("churn", "champion", version)
    return Logged(model, features, run.info.run_id, version)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path_factory.mktemp("turnout") / "home").start()
    yield live
    live.stop()


def test_a_registry_alias_is_registered_served_and_tagged(
    server: LiveServer, logged: Logged
) -> None:
    with server.client() as client:
        record = client.register(
            "churn", "models:/churn@champion", flavor="mlflow", tags={"team": "risk"}
        )
        client.create_deployment("churn-prod", model="churn", version=record["version"])
        answer = client.predict("churn-prod", logged.features.to_dict(orient="records"))

    assert record["flavor"] == "mlflow"
    tags = record["tags"]
    assert tags.pop("mlflow.model_id").startswith("m-")
    assert tags == {
        "team": "risk",
        "mlflow.source": "models:/churn@champion",
        "mlflow.run_id": logged.run_id,
        "mlflow.model_version": logged.version,
        "mlflow.version": mlflow.__version__,
    }
    np.testing.assert_array_equal(answer["predictions"], logged.model.predict(logged.features))
    np.testing.assert_allclose(answer["probabilities"], logged.model.predict_proba(logged.features))


def test_a_run_is_registered_with_its_run_id(server: LiveServer, logged: Logged) -> None:
    uri = f"runs:/{logged.run_id}/model"
    with server.client() as client:
        record = client.register("churn-run", uri, flavor="mlflow")
        client.create_deployment("churn-run", model="churn-run", version=record["version"])
        answer = client.infer(
            "churn-run",
            {"inputs": [{"name": "input-0", "shape": [3, 4], "datatype": "FP64",
                         "data": logged.features[:3].to_numpy().ravel().tolist()}]},
            version=record["version"],
        )  # fmt: skip

    assert record["tags"]["mlflow.source"] == uri
    assert record["tags"]["mlflow.run_id"] == logged.run_id
    assert "mlflow.model_version" not in record["tags"]
    assert answer["outputs"][0]["data"] == logged.model.predict(logged.features[:3]).tolist()


def test_the_cli_registers_a_registry_version(
    server: LiveServer, logged: Logged, tracking: str
) -> None:
    result = _cli(server, "models", "register", "churn-cli", f"models:/churn/{logged.version}",
                  "--flavor", "mlflow", "--tag", "team=risk")  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert "registered churn-cli:1 (mlflow" in result.stdout
    with server.client() as client:
        tags = client.show_version("churn-cli", 1)["tags"]
    assert tags["mlflow.model_version"] == logged.version
    assert tags["team"] == "risk"


def test_an_unknown_alias_is_a_clear_error_and_registers_nothing(
    server: LiveServer, logged: Logged
) -> None:
    with server.client() as client:
        with pytest.raises(MlflowImportError, match=r"models:/churn@nobody.*alias nobody"):
            client.register("churn-none", "models:/churn@nobody", flavor="mlflow")
        with pytest.raises(ApiError, match="churn-none"):
            client.show_model("churn-none")

    result = _cli(server, "models", "register", "churn-none", "models:/churn@nobody",
                  "--flavor", "mlflow")  # fmt: skip
    assert result.returncode == 1
    assert "error: cannot resolve models:/churn@nobody" in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr


def test_a_version_that_does_not_exist_is_a_clear_error(logged: Logged) -> None:
    with (
        pytest.raises(MlflowImportError, match="cannot resolve models:/churn/99"),
        downloaded("models:/churn/99", flavor="mlflow"),
    ):
        pass


def _cli(server: LiveServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TURNOUT_URL": server.url, "TURNOUT_HOME": str(server.home)}
    env.pop("TURNOUT_TOKEN", None)
    return subprocess.run(
        [sys.executable, "-m", "turnout", *args], env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip


# -- without a server -------------------------------------------------------------------------


@pytest.fixture
def no_server(monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    return url


@pytest.mark.parametrize(
    ("uri", "flavor", "message"),
    [
        ("models:/churn@champion", "sklearn", "register it with --flavor mlflow"),
        ("models:/churn/latest", "mlflow", "use models:/NAME@ALIAS, models:/NAME/VERSION"),
    ],
)
def test_what_cannot_be_imported_says_why(
    no_server: str, uri: str, flavor: str, message: str
) -> None:
    with pytest.raises(MlflowImportError, match=message), downloaded(uri, flavor=flavor):
        pass


def test_an_unreachable_tracking_server_is_named(no_server: str) -> None:
    unreachable = f"cannot reach the MLflow tracking server at {no_server}"
    with (
        pytest.raises(MlflowImportError, match=unreachable),
        downloaded("models:/churn@champion", flavor="mlflow"),
    ):
        pass


def test_a_password_in_the_tracking_uri_is_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://alice:s3cret@127.0.0.1:{free_port()}")
    with (
        pytest.raises(MlflowImportError, match="cannot reach") as raised,
        downloaded("models:/churn@champion", flavor="mlflow"),
    ):
        pass
    assert "s3cret" not in raised.value.message
    assert "alice" in raised.value.message


def test_no_tracking_uri_says_to_set_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with (
        pytest.raises(MlflowImportError, match="set MLFLOW_TRACKING_URI"),
        downloaded("models:/churn@champion", flavor="mlflow"),
    ):
        pass


def test_without_mlflow_installed_the_error_names_the_extra(
    no_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)
    monkeypatch.setitem(sys.modules, "mlflow.artifacts", None)
    with (
        pytest.raises(MlflowImportError, match=r"pip install 'turnout\[mlflow\]'"),
        downloaded("models:/churn@champion", flavor="mlflow"),
    ):
        pass
