"""Bad requests against a real `turnout serve`: each gets a clear 4xx; the server keeps serving."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pandas as pd
import pytest
import tritonclient.http as httpclient
from sklearn.pipeline import Pipeline
from tritonclient.utils import InferenceServerException

from tests.fixtures.models import breast_cancer, save_joblib, sklearn_pipeline, training_csv
from tests.fixtures.server import LiveServer

pytestmark = pytest.mark.server

DEPLOYMENT = "bc-prod"
INFER = f"/v2/models/{DEPLOYMENT}/infer"
PREDICT = f"/v1/deployments/{DEPLOYMENT}/predict"


@pytest.fixture(scope="module")
def model() -> Pipeline:
    return sklearn_pipeline()


@pytest.fixture(scope="module")
def rows() -> np.ndarray:
    features, _ = breast_cancer()
    return features.to_numpy(dtype=np.float64)[[0, 1, 20, 300, 568]]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, model: Pipeline) -> Iterator[LiveServer]:
    work = tmp_path_factory.mktemp("bad-input")
    live = LiveServer(work / "home").start()
    try:
        with live.client() as client:
            path = save_joblib(model, work)
            csv = training_csv(work)
            client.register("bc", path, flavor="sklearn", training_data=csv, target="target")
            client.create_deployment(DEPLOYMENT, model="bc", version=1)
        yield live
    finally:
        live.stop()


@pytest.fixture(scope="module")
def http(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


def oip_body(x: np.ndarray, **fields: Any) -> dict[str, Any]:
    tensor = {"name": "input-0", "shape": list(x.shape), "datatype": "FP64"}
    return {"inputs": [{**tensor, "data": x.ravel().tolist()}], **fields}


def assert_error(response: httpx.Response, status: int, mentions: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}
    assert isinstance(body["error"], str)
    assert mentions.lower() in body["error"].lower(), body["error"]
    return str(body["error"])


ROW = [1.0] * 30

BAD_OIP_BODIES: list[tuple[str, Any, str]] = [
    ("malformed-json", b'{"inputs": [{"name": "input-0",', "malformed JSON"),
    ("not-json", b"inputs=1,2,3", "malformed JSON"),
    ("nan-literal", b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [NaN]}]}',
     "malformed JSON"),
    ("empty-body", b"", "empty request body"),
    ("array-body", b"[1, 2, 3]", "JSON object"),
    ("string-body", b'"infer"', "JSON object"),
    ("no-inputs", {}, "'inputs'"),
    ("empty-inputs", {"inputs": []}, "'inputs'"),
    ("inputs-not-list", {"inputs": {"name": "input-0"}}, "'inputs'"),
    ("count-vs-shape", {"inputs": [{"name": "input-0", "shape": [1, 30], "datatype": "FP64",
                                    "data": ROW[:29]}]}, "needs 30 values, data has 29"),
    ("wrong-feature-count", {"inputs": [{"name": "input-0", "shape": [1, 29], "datatype": "FP64",
                                         "data": ROW[:29]}]}, "expected 30 features per row"),
    ("wrong-shape", {"inputs": [{"name": "input-0", "shape": [2, 15], "datatype": "FP64",
                                 "data": ROW}]}, "expected 30 features per row, got 15"),
    ("three-dims", {"inputs": [{"name": "input-0", "shape": [1, 1, 30], "datatype": "FP64",
                                "data": ROW}]}, "does not fit a model with 30 features"),
    ("negative-shape", {"inputs": [{"name": "input-0", "shape": [-1, 30], "datatype": "FP64",
                                    "data": ROW}]}, "non-negative integers"),
    ("strings", {"inputs": [{"name": "input-0", "shape": [1, 30], "datatype": "FP64",
                             "data": ["1.0"] * 30}]}, "expected numbers, got str"),
    ("bytes", {"inputs": [{"name": "input-0", "shape": [1, 30], "datatype": "BYTES",
                           "data": ["1.0"] * 30}]}, "BYTES"),
    ("unknown-datatype", {"inputs": [{"name": "input-0", "shape": [1, 30], "datatype": "FLOAT",
                                      "data": ROW}]}, "unknown datatype 'FLOAT'"),
    ("datatype-list", {"inputs": [{"name": "input-0", "shape": [1, 30], "datatype": ["FP64"],
                                   "data": ROW}]}, "unknown datatype"),
    ("null", {"inputs": [{"name": "input-0", "shape": [1, 30], "datatype": "FP64",
                          "data": [None, *ROW[1:]]}]}, "missing value"),
    ("ragged", {"inputs": [{"name": "input-0", "shape": [2, 30], "datatype": "FP64",
                            "data": [ROW, ROW[:29]]}]}, "not a regular array"),
    ("no-rows", {"inputs": [{"name": "input-0", "shape": [0, 30], "datatype": "FP64",
                             "data": []}]}, "no rows"),
    ("unknown-column", {"inputs": [{"name": "a", "shape": [1], "datatype": "FP64", "data": [1]},
                                   {"name": "b", "shape": [1], "datatype": "FP64", "data": [1]}]},
     "unknown inputs"),
    ("id-not-string", {**oip_body(np.ones((1, 30))), "id": 42}, "'id' must be a string"),
    ("id-too-long", {**oip_body(np.ones((1, 30))), "id": "x" * 200}, "'id' must be"),
    ("unknown-output", {**oip_body(np.ones((1, 30))), "outputs": [{"name": "logits"}]},
     "unknown outputs ['logits']"),
    ("outputs-not-list", {**oip_body(np.ones((1, 30))), "outputs": "predict"}, "'outputs'"),
    ("deep-nesting", b"[" * 5000 + b"]" * 5000, "malformed JSON"),
    ("huge-garbage", b"\x00\xffnonsense" * 200_000, "malformed JSON"),
    ("huge-wrong-shape", {"inputs": [{"name": "input-0", "shape": [100_000, 31],
                                      "datatype": "FP64", "data": [0.5] * 3_100_000}]},
     "expected 30 features per row, got 31"),
]  # fmt: skip


def encode(body: Any) -> bytes:
    return body if isinstance(body, bytes) else orjson.dumps(body)


@pytest.mark.parametrize(
    ("body", "mentions"), [case[1:] for case in BAD_OIP_BODIES], ids=[c[0] for c in BAD_OIP_BODIES]
)
def test_bad_oip_request_is_a_400(http: httpx.Client, body: Any, mentions: str) -> None:
    headers = {"content-type": "application/json"}
    response = http.post(INFER, content=encode(body), headers=headers)
    assert_error(response, 400, mentions)


BAD_NATIVE_BODIES: list[tuple[str, Any, str]] = [
    ("malformed-json", b'{"instances": [[1, 2', "malformed JSON"),
    ("empty-body", b"", "empty request body"),
    ("array-body", orjson.dumps([ROW]), "JSON object"),
    ("empty-instances", {"instances": []}, "non-empty 'instances'"),
    ("wrong-feature-count", {"instances": [ROW[:29]]}, "expected 30 features per row, got 29"),
    ("strings", {"instances": [["x"] * 30]}, "expected numbers, got str"),
    ("null", {"instances": [[*ROW[:29], None]]}, "missing value"),
    ("record-missing-key", {"instances": [{"mean radius": 1.0}]}, "lacks columns"),
    ("mixed", {"instances": [ROW, {"mean radius": 1.0}]}, "mixes records and rows"),
    ("split-missing-column", {"dataframe_split": {"columns": ["a"] * 30, "data": [ROW]}},
     "dataframe_split lacks columns"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("body", "mentions"),
    [case[1:] for case in BAD_NATIVE_BODIES],
    ids=[c[0] for c in BAD_NATIVE_BODIES],
)
def test_bad_native_request_is_a_400(http: httpx.Client, body: Any, mentions: str) -> None:
    response = http.post(PREDICT, content=encode(body))
    assert_error(response, 400, mentions)


def test_body_over_the_limit_is_a_413(http: httpx.Client) -> None:
    response = http.post(INFER, content=b" " * ((64 << 20) + 1))
    assert_error(response, 413, "request body over")


@pytest.mark.parametrize(
    ("method", "path", "status", "mentions"),
    [
        ("POST", "/v2/models/nope/infer", 404, "deployment 'nope' not found"),
        ("POST", "/v2/models/nope/versions/1/infer", 404, "deployment 'nope' not found"),
        ("POST", "/v1/deployments/nope/predict", 404, "deployment 'nope' not found"),
        ("GET", "/v2/models/nope", 404, "not found"),
        ("GET", "/v2/models/nope/ready", 404, "not found"),
        ("POST", f"/v2/models/{DEPLOYMENT}/versions/99/infer", 403, "version 99"),
        ("GET", f"/v2/models/{DEPLOYMENT}/versions/99", 403, "version 99"),
        ("GET", f"/v2/models/{DEPLOYMENT}/versions/99/ready", 403, "version 99"),
        ("POST", f"/v2/models/{DEPLOYMENT}/versions/abc/infer", 400, "invalid version 'abc'"),
        ("POST", f"/v2/models/{DEPLOYMENT}/versions/0/infer", 400, "invalid version '0'"),
        ("POST", f"/v2/models/{DEPLOYMENT}/versions/-1/infer", 400, "invalid version '-1'"),
        ("POST", f"/v2/models/{DEPLOYMENT}/versions/%C2%B2/infer", 400, "invalid version"),
        ("GET", f"/v2/models/{DEPLOYMENT}/versions/%C2%B2", 400, "invalid version"),
        ("GET", INFER, 405, "method GET not allowed"),
        ("PUT", INFER, 405, "method PUT not allowed"),
        ("GET", PREDICT, 405, "method GET not allowed"),
        ("POST", f"/v2/models/{DEPLOYMENT}", 405, "method POST not allowed"),
        ("DELETE", "/v2/health/ready", 405, "method DELETE not allowed"),
        ("GET", f"/v2/models/{DEPLOYMENT}/explain", 404, "no route"),
        ("GET", "/v2/repository/index", 404, "no route"),
        ("POST", "/v1/deployments/predict", 404, "no route"),
    ],
)
def test_bad_route_or_method(
    http: httpx.Client, method: str, path: str, status: int, mentions: str
) -> None:
    body = orjson.dumps(oip_body(np.ones((1, 30)))) if method in ("POST", "PUT") else None
    assert_error(http.request(method, path, content=body), status, mentions)


# -- valid requests -------------------------------------------------------------------------


def test_oip_response_schema_and_headers(
    http: httpx.Client, model: Pipeline, rows: np.ndarray
) -> None:
    response = http.post(INFER, content=orjson.dumps(oip_body(rows, id="req-schema-1")))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-turnout-prediction-id"] == "req-schema-1"
    assert response.headers["x-turnout-model-version"] == "1"
    assert response.headers["x-turnout-role"] == "champion"
    assert response.headers["x-turnout-revision"] == "1"
    body = response.json()
    assert body["model_name"] == DEPLOYMENT
    assert body["model_version"] == "1"
    assert body["id"] == "req-schema-1"
    outputs = {o["name"]: o for o in body["outputs"]}
    assert set(outputs) == {"predict", "predict_proba"}
    for output in body["outputs"]:
        assert set(output) >= {"name", "datatype", "shape", "data"}
        assert all(isinstance(d, int) for d in output["shape"])
    assert outputs["predict"]["datatype"] == "INT64"
    assert outputs["predict"]["shape"] == [len(rows)]
    assert outputs["predict"]["data"] == model.predict(frame(rows)).tolist()
    assert outputs["predict_proba"]["datatype"] == "FP64"
    assert outputs["predict_proba"]["shape"] == [len(rows), 2]
    probabilities = np.array(outputs["predict_proba"]["data"]).reshape(len(rows), 2)
    np.testing.assert_allclose(probabilities, model.predict_proba(frame(rows)), rtol=1e-12)


def test_oip_prediction_id_is_made_up_without_request_id(
    http: httpx.Client, rows: np.ndarray
) -> None:
    response = http.post(INFER, content=orjson.dumps(oip_body(rows[:1])))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == response.headers["x-turnout-prediction-id"]
    assert body["id"]


def test_version_path_infer(http: httpx.Client, model: Pipeline, rows: np.ndarray) -> None:
    path = f"/v2/models/{DEPLOYMENT}/versions/1/infer"
    response = http.post(path, content=orjson.dumps(oip_body(rows, id="v1")))
    assert response.status_code == 200, response.text
    assert response.json()["model_version"] == "1"
    assert response.headers["x-turnout-role"] == "direct"
    predict = next(o for o in response.json()["outputs"] if o["name"] == "predict")
    assert predict["data"] == model.predict(frame(rows)).tolist()


def test_tritonclient_wrong_shape_raises_server_message(server: LiveServer) -> None:
    client = httpclient.InferenceServerClient(url=server.url.removeprefix("http://"))
    try:
        x = np.ones((1, 29), dtype=np.float64)
        tensor = httpclient.InferInput("input-0", list(x.shape), "FP64")
        tensor.set_data_from_numpy(x, binary_data=False)
        output = httpclient.InferRequestedOutput("predict", binary_data=False)
        with pytest.raises(InferenceServerException, match="expected 30 features per row"):
            client.infer(DEPLOYMENT, inputs=[tensor], outputs=[output])
    finally:
        client.close()


def test_tritonclient_valid_request(server: LiveServer, model: Pipeline, rows: np.ndarray) -> None:
    client = httpclient.InferenceServerClient(url=server.url.removeprefix("http://"))
    try:
        assert client.is_server_live()
        assert client.is_model_ready(DEPLOYMENT)
        tensor = httpclient.InferInput("input-0", list(rows.shape), "FP64")
        tensor.set_data_from_numpy(rows, binary_data=False)
        output = httpclient.InferRequestedOutput("predict", binary_data=False)
        result = client.infer(DEPLOYMENT, inputs=[tensor], outputs=[output], request_id="tc-1")
        np.testing.assert_array_equal(result.as_numpy("predict"), model.predict(frame(rows)))
        response = result.get_response()
        assert response["id"] == "tc-1"
        assert response["model_version"] == "1"
        assert [o["name"] for o in response["outputs"]] == ["predict"]
    finally:
        client.close()


def test_server_keeps_serving_after_bad_requests(
    server: LiveServer, http: httpx.Client, model: Pipeline, rows: np.ndarray
) -> None:
    """Runs last in this module: every bad request above has already been sent."""
    for _, body, _ in BAD_OIP_BODIES[:8]:
        assert http.post(INFER, content=encode(body)).status_code == 400
    response = http.post(INFER, content=orjson.dumps(oip_body(rows, id="after-bad")))
    assert response.status_code == 200, response.text
    predict = next(o for o in response.json()["outputs"] if o["name"] == "predict")
    assert predict["data"] == model.predict(frame(rows)).tolist()
    native = http.post(PREDICT, content=orjson.dumps({"instances": rows.tolist()}))
    assert native.status_code == 200, native.text
    assert native.json()["predictions"] == model.predict(frame(rows)).tolist()
    assert native.json()["model_version"] == 1
    assert server.process is not None
    assert server.process.poll() is None
    assert "Traceback" not in Path(server.log).read_text()


def frame(rows: np.ndarray) -> pd.DataFrame:
    """Rows as the named-column frame the reference model was fitted on."""
    features, _ = breast_cancer()
    return pd.DataFrame(rows, columns=features.columns)
