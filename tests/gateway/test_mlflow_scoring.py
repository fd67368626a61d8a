"""MLflow's scoring protocol: turnout answers every payload form exactly as MLflow's own
scoring server (`mlflow models serve`) does for the same MLflow model, and refuses what it
refuses with the same status code."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import mlflow.sklearn
import pytest
from mlflow.models import infer_signature
from sklearn.pipeline import Pipeline

from tests.fixtures.models import breast_cancer, sklearn_pipeline
from tests.fixtures.server import LiveServer, free_port

pytestmark = [
    pytest.mark.server,
    pytest.mark.slow,
    # mlflow warns about its own type hints when mlflow.pyfunc is first imported.
    pytest.mark.filterwarnings("ignore:.*Any type hint is inferred as AnyType:UserWarning"),
]

DEPLOYMENT = "bc-prod"
JSON_TYPE = "application/json"


@pytest.fixture(scope="module")
def model() -> Pipeline:
    return sklearn_pipeline()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory, model: Pipeline) -> Path:
    features, _ = breast_cancer()
    folder = tmp_path_factory.mktemp("mlflow") / "model"
    signature = infer_signature(features, model.predict(features))
    mlflow.sklearn.save_model(model, str(folder), signature=signature)
    return folder


@pytest.fixture(scope="module")
def mlflow_url(model_dir: Path) -> Iterator[str]:
    """MLflow's own scoring server for the model, the reference for every answer."""
    port = free_port()
    bin_dir = str(Path(sys.executable).parent)  # it starts `uvicorn` found on PATH
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    command = [str(Path(bin_dir) / "mlflow"), "models", "serve", "-m", str(model_dir),
               "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)]  # fmt: skip
    log = model_dir.parent / "mlflow-serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"mlflow models serve exited:\n{log.read_text()}")
            try:
                if httpx.get(f"{url}/ping", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"mlflow models serve did not start:\n{log.read_text()}")
            time.sleep(0.2)
        yield url
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path_factory.mktemp("scoring") / "home").start()
    try:
        with live.client() as client:
            client.register("bc", model_dir, flavor="mlflow")
            client.create_deployment(DEPLOYMENT, model="bc")
        yield live
    finally:
        live.stop()


def sample() -> Any:
    return breast_cancer()[0].iloc[[0, 3, 19, 40, 77]]


def payloads() -> list[tuple[str, bytes, str]]:
    rows = sample()
    columns = list(rows.columns)
    reversed_columns = columns[::-1]
    split = rows.to_dict(orient="split")
    records = rows.to_dict(orient="records")

    def body(value: object) -> bytes:
        return json.dumps(value).encode()

    return [
        ("split", body({"dataframe_split": split}), JSON_TYPE),
        ("split-no-index", body({"dataframe_split": {"columns": columns,
                                                     "data": split["data"]}}), JSON_TYPE),
        ("split-reordered", body({"dataframe_split": {
            "columns": reversed_columns, "data": rows[reversed_columns].to_numpy().tolist()}}),
         JSON_TYPE),
        ("records", body({"dataframe_records": records}), JSON_TYPE),
        ("records-extra-column", body({"dataframe_records": [{**r, "note": 1} for r in records]}),
         JSON_TYPE),
        ("instances-records", body({"instances": records}), JSON_TYPE),
        ("inputs-records", body({"inputs": records}), JSON_TYPE),
        ("inputs-columns", body({"inputs": {c: rows[c].tolist() for c in columns}}), JSON_TYPE),
        ("instances-columns", body({"instances": {c: rows[c].tolist() for c in columns}}),
         JSON_TYPE),
        ("params", body({"dataframe_split": split, "params": {"threshold": 0.5}}), JSON_TYPE),
        ("json-charset", body({"dataframe_records": records}), "application/json; charset=utf-8"),
        ("csv", rows.to_csv(index=False).encode(), "text/csv"),
        ("csv-charset", rows.to_csv(index=False).encode(), "text/csv; charset=UTF-8"),
    ]  # fmt: skip


def bad_payloads() -> list[tuple[str, bytes, str]]:
    rows = sample()
    columns = list(rows.columns)
    split = {"columns": columns[:-1], "data": rows.to_numpy()[:, :-1].tolist()}
    return [
        ("malformed-json", b'{"dataframe_split": ', JSON_TYPE),
        ("empty", b"", JSON_TYPE),
        ("a-list", b"[1, 2, 3]", JSON_TYPE),
        ("two-formats", json.dumps({"instances": [], "inputs": []}).encode(), JSON_TYPE),
        ("no-format", json.dumps({"rows": [[1.0] * 30]}).encode(), JSON_TYPE),
        ("missing-column", json.dumps({"dataframe_split": split}).encode(), JSON_TYPE),
        ("strings", json.dumps({"dataframe_records": [dict.fromkeys(columns, "abc")]}).encode(),
         JSON_TYPE),
        ("nulls", json.dumps({"dataframe_split": {"columns": columns,
                                                  "data": [[None] * 30]}}).encode(), JSON_TYPE),
        ("csv-broken", b'a,b\n1,2\n"3', "text/csv"),
        ("plain-text", b"1,2,3", "text/plain"),
        ("form-encoded", b"a=1", "application/x-www-form-urlencoded"),
        ("latin-1", b"{}", "application/json; charset=latin-1"),
        ("unknown-parameter", b"{}", "application/json; format=pandas-split"),
    ]  # fmt: skip


def post(url: str, body: bytes, content_type: str, **headers: str) -> httpx.Response:
    return httpx.post(url, content=body, headers={"content-type": content_type, **headers},
                      timeout=60)  # fmt: skip


@pytest.mark.parametrize(("body", "content_type"), [p[1:] for p in payloads()],
                         ids=[p[0] for p in payloads()])  # fmt: skip
def test_answers_as_mlflow_does(
    server: LiveServer, mlflow_url: str, model: Pipeline, body: bytes, content_type: str
) -> None:
    reference = post(f"{mlflow_url}/invocations", body, content_type)
    assert reference.status_code == 200, reference.text
    assert reference.json() == {"predictions": model.predict(sample()).tolist()}
    response = post(f"{server.url}/v1/deployments/{DEPLOYMENT}/invocations", body, content_type)
    assert response.status_code == 200, response.text
    assert response.json() == reference.json()
    assert response.headers["x-turnout-model-version"] == "1"
    assert response.headers["x-turnout-role"] == "champion"
    assert response.headers["x-turnout-prediction-id"]


@pytest.mark.parametrize(("body", "content_type"), [p[1:] for p in bad_payloads()],
                         ids=[p[0] for p in bad_payloads()])  # fmt: skip
def test_refuses_what_mlflow_refuses(
    server: LiveServer, mlflow_url: str, body: bytes, content_type: str
) -> None:
    reference = post(f"{mlflow_url}/invocations", body, content_type)
    assert 400 <= reference.status_code < 500, reference.text
    response = post(f"{server.url}/v1/deployments/{DEPLOYMENT}/invocations", body, content_type)
    assert response.status_code == reference.status_code, response.text
    error = response.json()
    assert error["error"] == error["message"]
    assert error["error_code"] == "BAD_REQUEST"
    assert "x-turnout-prediction-id" not in response.headers
    if reference.headers["content-type"].startswith(JSON_TYPE):
        assert reference.json()["error_code"] in ("BAD_REQUEST", "INVALID_PARAMETER_VALUE")
    else:  # MLflow answers content-type problems in plain text; the first words agree
        assert error["message"].split(":")[0] == reference.text.split(":")[0]


def test_rows_are_answered_where_mlflow_needs_column_names(
    server: LiveServer, mlflow_url: str, model: Pipeline
) -> None:
    """A superset: plain rows reach a model with named columns in signature order."""
    body = json.dumps({"instances": sample().to_numpy().tolist()}).encode()
    assert post(f"{mlflow_url}/invocations", body, JSON_TYPE).status_code == 400
    response = post(f"{server.url}/v1/deployments/{DEPLOYMENT}/invocations", body, JSON_TYPE)
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": model.predict(sample()).tolist()}


def test_unknown_deployment_and_method(server: LiveServer) -> None:
    body = json.dumps({"instances": [[1.0] * 30]}).encode()
    missing = post(f"{server.url}/v1/deployments/nope/invocations", body, JSON_TYPE)
    assert missing.status_code == 404
    assert missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    wrong = httpx.get(f"{server.url}/v1/deployments/{DEPLOYMENT}/invocations")
    assert wrong.status_code == 405


def test_root_invocations_names_the_deployment_by_header(
    server: LiveServer, mlflow_url: str
) -> None:
    body = json.dumps({"dataframe_records": sample().to_dict(orient="records")}).encode()
    reference = post(f"{mlflow_url}/invocations", body, JSON_TYPE)
    response = post(f"{server.url}/invocations", body, JSON_TYPE,
                    **{"x-turnout-deployment": DEPLOYMENT})  # fmt: skip
    assert response.status_code == 200, response.text
    assert response.json() == reference.json()
    bare = post(f"{server.url}/invocations", body, JSON_TYPE)
    assert bare.status_code == 400
    assert "x-turnout-deployment" in bare.json()["error"]
