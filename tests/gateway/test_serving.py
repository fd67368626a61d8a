"""Served predictions equal the model's own, through tritonclient and the native API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as triton

from tests.fixtures.models import (
    breast_cancer,
    python_reference,
    save_joblib,
    save_onnx,
    save_python,
    sklearn_pipeline,
    training_csv,
)
from tests.fixtures.server import LiveServer

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    folder = tmp_path_factory.mktemp("serving")
    live = LiveServer(folder / "home").start()
    client = live.client()
    pipeline = sklearn_pipeline()
    client.register(
        "bc", save_joblib(pipeline, folder), flavor="sklearn",
        training_data=training_csv(folder), target="target",
    )  # fmt: skip
    client.create_deployment("bc-prod", model="bc", version=1)
    onnx_path, onnx_model = save_onnx(folder)
    client.register("bc-onnx", onnx_path, flavor="onnx")
    client.create_deployment("bc-onnx-prod", model="bc-onnx")
    client.register("linear", save_python(folder), flavor="python")
    client.create_deployment("linear-prod", model="linear")
    live.models = {"bc": pipeline, "bc-onnx": onnx_model}  # type: ignore[attr-defined]
    yield live
    client.close()
    live.stop()


@pytest.fixture
def rows() -> np.ndarray:
    features, _ = breast_cancer()
    return features.to_numpy(dtype=np.float64)[::37]


def triton_infer(server: LiveServer, deployment: str, rows: np.ndarray, **kwargs: object):  # type: ignore[no-untyped-def]
    client = triton.InferenceServerClient(server.url.removeprefix("http://"))
    try:
        tensor = triton.InferInput("input-0", list(rows.shape), "FP64")
        tensor.set_data_from_numpy(rows, binary_data=False)
        outputs = [triton.InferRequestedOutput("predict", binary_data=False)]
        return client.infer(deployment, [tensor], outputs=outputs, **kwargs)
    finally:
        client.close()


def test_tritonclient_matches_sklearn(server: LiveServer, rows: np.ndarray) -> None:
    result = triton_infer(server, "bc-prod", rows, request_id="req-1")
    expected = server.models["bc"].predict(breast_cancer()[0].iloc[::37])  # type: ignore[attr-defined]
    np.testing.assert_array_equal(result.as_numpy("predict"), expected)
    response = result.get_response()
    assert response["id"] == "req-1"
    assert response["model_name"] == "bc-prod"
    assert response["model_version"] == "1"


def test_tritonclient_matches_onnx(server: LiveServer, rows: np.ndarray) -> None:
    result = triton_infer(server, "bc-onnx-prod", rows)
    expected = server.models["bc-onnx"].predict(rows.astype(np.float32))  # type: ignore[attr-defined]
    np.testing.assert_array_equal(result.as_numpy("predict"), expected)


def test_tritonclient_matches_python_flavor(server: LiveServer, rows: np.ndarray) -> None:
    result = triton_infer(server, "linear-prod", rows)
    np.testing.assert_allclose(result.as_numpy("predict"), python_reference(rows), rtol=1e-12)


def test_tritonclient_metadata_and_health(server: LiveServer) -> None:
    client = triton.InferenceServerClient(server.url.removeprefix("http://"))
    try:
        assert client.is_server_live()
        assert client.is_server_ready()
        assert client.is_model_ready("bc-prod")
        meta = client.get_server_metadata()
        assert meta["name"] == "turnout"
        assert set(meta) >= {"name", "version", "extensions"}
        model = client.get_model_metadata("bc-prod")
        assert model["name"] == "bc-prod"
        assert model["platform"] == "sklearn"
        assert model["versions"] == ["1"]
        assert model["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 30]}]
        outputs = {o["name"]: o for o in model["outputs"]}
        assert outputs["predict"]["shape"] == [-1]
        assert outputs["predict_proba"]["shape"] == [-1, 2]
    finally:
        client.close()


def test_probabilities_match_sklearn(server: LiveServer, rows: np.ndarray) -> None:
    body = {"inputs": [{"name": "x", "shape": list(rows.shape), "datatype": "FP64",
                        "data": rows.ravel().tolist()}]}  # fmt: skip
    response = httpx.post(f"{server.url}/v2/models/bc-prod/infer", json=body)
    assert response.status_code == 200
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    proba = np.array(outputs["predict_proba"]["data"]).reshape(outputs["predict_proba"]["shape"])
    expected = server.models["bc"].predict_proba(breast_cancer()[0].iloc[::37])  # type: ignore[attr-defined]
    np.testing.assert_allclose(proba, expected, rtol=1e-12)


def test_one_input_per_column(server: LiveServer) -> None:
    features, _ = breast_cancer()
    sample = features.iloc[:3]
    body = {
        "inputs": [
            {"name": name, "shape": [3], "datatype": "FP64", "data": sample[name].tolist()}
            for name in reversed(list(features.columns))
        ]
    }
    response = httpx.post(f"{server.url}/v2/models/bc-prod/infer", json=body)
    assert response.status_code == 200, response.text
    expected = server.models["bc"].predict(sample)  # type: ignore[attr-defined]
    assert response.json()["outputs"][0]["data"] == expected.tolist()


def test_native_rows_and_records_match_sklearn(server: LiveServer) -> None:
    features, _ = breast_cancer()
    sample = features.iloc[:5]
    model = server.models["bc"]  # type: ignore[attr-defined]
    for instances in (sample.to_numpy().tolist(), sample.to_dict(orient="records")):
        response = httpx.post(
            f"{server.url}/v1/deployments/bc-prod/predict", json={"instances": instances}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["predictions"] == model.predict(sample).tolist()
        np.testing.assert_allclose(body["probabilities"], model.predict_proba(sample), rtol=1e-12)
        assert body["model_version"] == 1
        assert body["revision"] == 1
        assert len(body["prediction_ids"]) == 5
        assert len(set(body["prediction_ids"])) == 5
        assert response.headers["x-turnout-model-version"] == "1"
        assert response.headers["x-turnout-role"] == "champion"
        assert response.headers["x-turnout-revision"] == "1"
        assert response.headers["x-turnout-prediction-id"]


def test_dataframe_split(server: LiveServer) -> None:
    features, _ = breast_cancer()
    sample = features.iloc[:4]
    split = sample[list(reversed(sample.columns))].to_dict(orient="split")
    body = {"dataframe_split": {"columns": split["columns"], "data": split["data"]}}
    response = httpx.post(f"{server.url}/v1/deployments/bc-prod/predict", json=body)
    assert response.status_code == 200, response.text
    expected = server.models["bc"].predict(sample)  # type: ignore[attr-defined]
    assert response.json()["predictions"] == expected.tolist()


def test_per_version_infer(server: LiveServer, rows: np.ndarray, tmp_path: Path) -> None:
    with server.client() as client:
        client.register("bc", save_joblib(sklearn_pipeline(c=0.001), tmp_path), flavor="sklearn")
    body = {"inputs": [{"name": "input-0", "shape": list(rows.shape), "datatype": "FP64",
                        "data": rows.tolist()}]}  # fmt: skip
    routed = httpx.post(f"{server.url}/v2/models/bc-prod/infer", json=body)
    assert routed.json()["model_version"] == "1"
    unrouted = f"{server.url}/v2/models/bc-prod/versions/2"
    anonymous = httpx.post(f"{unrouted}/infer", json=body)
    assert anonymous.status_code == 403  # only deployers may call versions nothing routes to
    deployer = {"authorization": f"Bearer {server.token}"}
    direct = httpx.post(f"{unrouted}/infer", json=body, headers=deployer)
    assert direct.status_code == 200, direct.text
    assert direct.json()["model_version"] == "2"
    assert direct.headers["x-turnout-model-version"] == "2"
    assert direct.headers["x-turnout-role"] == "direct"
    ready = httpx.get(f"{unrouted}/ready", headers=deployer)
    assert ready.status_code == 200


def test_request_id_is_the_prediction_id(server: LiveServer) -> None:
    body = {"id": "order-42", "inputs": [{"name": "input-0", "shape": [1, 30], "datatype": "FP64",
                                          "data": [1.0] * 30}]}  # fmt: skip
    response = httpx.post(f"{server.url}/v2/models/bc-prod/infer", json=body)
    assert response.headers["x-turnout-prediction-id"] == "order-42"
    assert response.json()["id"] == "order-42"
    assert response.json()["parameters"]["prediction_ids"] == ["order-42"]
