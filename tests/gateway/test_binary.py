"""The OIP binary tensor data extension over HTTP, against a real `turnout serve`:
tritonclient with its defaults gets the model's own predictions; malformed bodies get a 400."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import tritonclient.http as triton
from sklearn.compose import make_column_transformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder
from tritonclient.utils import serialize_byte_tensor

from tests.fixtures.models import (
    breast_cancer,
    save_joblib,
    save_onnx,
    sklearn_pipeline,
    training_csv,
)
from tests.fixtures.server import LiveServer

pytestmark = pytest.mark.server

INFER = "/v2/models/bc-prod/infer"


def city_model() -> tuple[Pipeline, pd.DataFrame]:
    """A classifier on a text column and a number, answering text labels."""
    frame = pd.DataFrame(
        {
            "city": ["paris", "lyon", "nice", "paris", "lyon", "nice"] * 5,
            "x": np.linspace(0.0, 3.0, 30),
        }
    )
    target = np.where((frame["city"] == "paris") | (frame["x"] > 2.0), "yes", "no")
    encode = make_column_transformer((OneHotEncoder(), ["city"]), remainder="passthrough")
    model = make_pipeline(encode, LogisticRegression()).fit(frame, target)
    return model, frame


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    folder = tmp_path_factory.mktemp("binary")
    live = LiveServer(folder / "home").start()
    try:
        with live.client() as client:
            pipeline = sklearn_pipeline()
            client.register(
                "bc", save_joblib(pipeline, folder), flavor="sklearn",
                training_data=training_csv(folder), target="target",
            )  # fmt: skip
            client.create_deployment("bc-prod", model="bc", version=1)
            onnx_path, onnx_model = save_onnx(folder)
            client.register("bc-onnx", onnx_path, flavor="onnx")
            client.create_deployment("bc-onnx-prod", model="bc-onnx")
            cities, frame = city_model()
            csv = folder / "cities.csv"
            frame.assign(label=cities.predict(frame)).to_csv(csv, index=False)
            client.register(
                "cities", save_joblib(cities, folder, "cities.joblib"), flavor="sklearn",
                training_data=csv, target="label",
            )  # fmt: skip
            client.create_deployment("cities-prod", model="cities")
        live.models = {"bc": pipeline, "bc-onnx": onnx_model, "cities": cities}  # type: ignore[attr-defined]
        yield live
    finally:
        live.stop()


@pytest.fixture
def triton_client(server: LiveServer) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(server.url.removeprefix("http://"))
    yield client
    client.close()


@pytest.fixture(scope="module")
def http(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


def rows() -> np.ndarray:
    return breast_cancer()[0].to_numpy(dtype=np.float64)[::37]


def binary_input(name: str, array: np.ndarray, datatype: str) -> triton.InferInput:
    tensor = triton.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array)  # binary_data=True, the default
    return tensor


# -- tritonclient with its defaults -----------------------------------------------------------


def test_defaults_match_sklearn(server: LiveServer, triton_client: Any) -> None:
    features = breast_cancer()[0].iloc[::37]
    model = server.models["bc"]  # type: ignore[attr-defined]
    result = triton_client.infer(
        "bc-prod", [binary_input("input-0", rows(), "FP64")], request_id="bin-1"
    )
    np.testing.assert_array_equal(result.as_numpy("predict"), model.predict(features))
    np.testing.assert_array_equal(result.as_numpy("predict_proba"), model.predict_proba(features))
    response = result.get_response()
    assert response["id"] == "bin-1"
    assert response["model_version"] == "1"
    assert {o["name"] for o in response["outputs"]} == {"predict", "predict_proba"}
    assert all("data" not in o for o in response["outputs"])


def test_defaults_match_onnx(server: LiveServer, triton_client: Any) -> None:
    x = rows().astype(np.float32)
    model = server.models["bc-onnx"]  # type: ignore[attr-defined]
    outputs = [triton.InferRequestedOutput("predict")]  # binary_data=True, the default
    result = triton_client.infer(
        "bc-onnx-prod", [binary_input("input-0", x, "FP32")], outputs=outputs
    )
    np.testing.assert_array_equal(result.as_numpy("predict"), model.predict(x))
    assert result.as_numpy("predict_proba") is None


@pytest.mark.parametrize(
    "datatype",
    ["BOOL", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64",
     "FP16", "FP32", "FP64"],
)  # fmt: skip
def test_every_numeric_datatype(server: LiveServer, triton_client: Any, datatype: str) -> None:
    dtype = triton.triton_to_np_dtype(datatype)
    x = np.abs(rows()).astype(dtype)
    features = pd.DataFrame(x.astype(np.float64), columns=breast_cancer()[0].columns)
    model = server.models["bc"]  # type: ignore[attr-defined]
    result = triton_client.infer("bc-prod", [binary_input("input-0", x, datatype)])
    np.testing.assert_array_equal(result.as_numpy("predict"), model.predict(features))


def test_bytes_in_and_out(server: LiveServer, triton_client: Any) -> None:
    frame = pd.DataFrame({"city": ["nice", "paris", "lyon", "lyon"], "x": [0.5, 0.1, 2.9, 0.2]})
    city = np.array(frame["city"].tolist(), dtype=np.object_)
    inputs = [
        binary_input("x", frame["x"].to_numpy(), "FP64"),
        binary_input("city", city, "BYTES"),
    ]
    result = triton_client.infer("cities-prod", inputs)
    expected = server.models["cities"].predict(frame)  # type: ignore[attr-defined]
    assert result.get_response()["outputs"][0]["datatype"] == "BYTES"
    assert [v.decode() for v in result.as_numpy("predict")] == expected.tolist()


def test_mixed_json_and_binary_inputs(server: LiveServer, triton_client: Any) -> None:
    frame = pd.DataFrame({"city": ["paris", "nice", "lyon"], "x": [0.2, 2.5, 1.0]})
    city = triton.InferInput("city", [3], "BYTES")
    city.set_data_from_numpy(np.array(frame["city"].tolist(), dtype=np.object_), binary_data=False)
    inputs = [city, binary_input("x", frame["x"].to_numpy(), "FP64")]
    outputs = [triton.InferRequestedOutput("predict", binary_data=False),
               triton.InferRequestedOutput("predict_proba")]  # fmt: skip
    result = triton_client.infer("cities-prod", inputs, outputs=outputs)
    model = server.models["cities"]  # type: ignore[attr-defined]
    by_name = {o["name"]: o for o in result.get_response()["outputs"]}
    assert by_name["predict"]["data"] == model.predict(frame).tolist()
    assert by_name["predict_proba"]["parameters"]["binary_data_size"] == 3 * 2 * 8
    np.testing.assert_array_equal(result.as_numpy("predict_proba"), model.predict_proba(frame))


def test_json_request_asking_binary_output(server: LiveServer, http: httpx.Client) -> None:
    x = rows()[:2]
    body = {
        "inputs": [{"name": "input-0", "shape": [2, 30], "datatype": "FP64", "data": x.tolist()}],
        "parameters": {"binary_data_output": True},
    }
    response = http.post(INFER, json=body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["x-turnout-role"] == "champion"
    length = int(response.headers["inference-header-content-length"])
    result = triton.InferResult.from_response_body(response.content, header_length=length)
    expected = server.models["bc"].predict(breast_cancer()[0].iloc[[0, 37]])  # type: ignore[attr-defined]
    np.testing.assert_array_equal(result.as_numpy("predict"), expected)


def test_metadata_lists_the_extension(triton_client: Any) -> None:
    assert "binary_tensor_data" in triton_client.get_server_metadata()["extensions"]


# -- malformed binary bodies ---------------------------------------------------------------


def framed(header: dict[str, Any], raw: bytes) -> tuple[bytes, dict[str, str]]:
    head = json.dumps(header).encode()
    return head + raw, {"inference-header-content-length": str(len(head))}


def fp64_input(size: int | object, shape: list[int] | None = None) -> dict[str, Any]:
    return {"name": "input-0", "shape": shape or [1, 30], "datatype": "FP64",
            "parameters": {"binary_data_size": size}}  # fmt: skip


ROW = np.ones(30).tobytes()

MALFORMED: list[tuple[str, bytes, dict[str, str], str]] = [
    ("too-short", *framed({"inputs": [fp64_input(240)]}, ROW[:200]),
     "binary_data_size is 240 but only 200 bytes"),
    ("bytes-left-over", *framed({"inputs": [fp64_input(240)]}, ROW + b"\x00" * 8),
     "248 bytes of binary data but the inputs' binary_data_size add up to 240"),
    ("size-not-the-dtype", *framed({"inputs": [fp64_input(120)]}, ROW[:120]),
     "needs 240 bytes (30 x 8), binary_data_size is 120"),
    ("size-not-a-multiple", *framed({"inputs": [fp64_input(239)]}, ROW[:239]),
     "needs 240 bytes"),
    ("negative-size", *framed({"inputs": [fp64_input(-8)]}, ROW), "non-negative integer"),
    ("float-size", *framed({"inputs": [fp64_input(240.0)]}, ROW), "non-negative integer"),
    ("string-size", *framed({"inputs": [fp64_input("240")]}, ROW), "non-negative integer"),
    ("bool-size", *framed({"inputs": [fp64_input(True)]}, ROW), "non-negative integer"),
    ("data-and-size", *framed({"inputs": [{**fp64_input(240), "data": [1.0] * 30}]}, ROW),
     "both 'data' and parameters.binary_data_size"),
    ("header-past-body", b'{"inputs": []}', {"inference-header-content-length": "400"},
     "Inference-Header-Content-Length is 400 but the body has only 14 bytes"),
    ("header-negative", ROW, {"inference-header-content-length": "-5"}, "non-negative integer"),
    ("header-not-integer", ROW, {"inference-header-content-length": "ten"}, "non-negative integer"),
    ("header-zero", ROW, {"inference-header-content-length": "0"}, "JSON header is missing"),
    ("header-cuts-json", b'{"inputs": [1]}' + ROW, {"inference-header-content-length": "5"},
     "malformed JSON in the first 5 bytes"),
    ("size-without-header", json.dumps({"inputs": [fp64_input(240)]}).encode() + ROW, {},
     "malformed JSON"),
    ("size-without-header-json", json.dumps({"inputs": [fp64_input(240)]}).encode(), {},
     "no Inference-Header-Content-Length"),
    ("bytes-length-past-end",
     *framed({"inputs": [{"name": "city", "shape": [1], "datatype": "BYTES",
                          "parameters": {"binary_data_size": 8}},
                         {"name": "x", "shape": [1], "datatype": "FP64", "data": [1.0]}]},
             struct.pack("<I", 100) + b"lyon"),
     "BYTES element 0 claims 100 bytes but only 4 remain"),
    ("bytes-too-few-elements",
     *framed({"inputs": [{"name": "city", "shape": [2], "datatype": "BYTES",
                          "parameters": {"binary_data_size": 8}}]},
             serialize_byte_tensor(np.array([b"lyon"], dtype=np.object_)).item()),
     "BYTES data ends after 1 of 2 elements"),
    ("bytes-left-over-in-tensor",
     *framed({"inputs": [{"name": "city", "shape": [1], "datatype": "BYTES",
                          "parameters": {"binary_data_size": 10}}]},
             serialize_byte_tensor(np.array([b"lyon"], dtype=np.object_)).item() + b"xx"),
     "2 bytes left over after 1 BYTES elements"),
    ("bytes-not-utf8",
     *framed({"inputs": [{"name": "city", "shape": [1], "datatype": "BYTES",
                          "parameters": {"binary_data_size": 6}}]},
             struct.pack("<I", 2) + b"\xff\xfe"),
     "not UTF-8"),
    ("bytes-to-numeric-model",
     *framed({"inputs": [{"name": "input-0", "shape": [1, 1], "datatype": "BYTES",
                          "parameters": {"binary_data_size": 8}}]},
             struct.pack("<I", 4) + b"lyon"),
     "datatype BYTES but the model takes numbers"),
    ("unknown-datatype", *framed({"inputs": [{**fp64_input(240), "datatype": "BF16"}]}, ROW),
     "unknown datatype 'BF16'"),
    ("binary-output-flag-not-bool",
     *framed({"inputs": [fp64_input(240)], "parameters": {"binary_data_output": "yes"}}, ROW),
     "binary_data_output must be true or false"),
    ("output-flag-not-bool",
     *framed({"inputs": [fp64_input(240)],
              "outputs": [{"name": "predict", "parameters": {"binary_data": 1}}]}, ROW),
     "binary_data must be true or false"),
    ("nan-in-binary",
     *framed({"inputs": [fp64_input(240)]}, np.full(30, np.nan).tobytes()), "missing value"),
    ("inf-in-binary",
     *framed({"inputs": [fp64_input(240)]}, np.full(30, np.inf).tobytes()), "infinite value"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("body", "headers", "mentions"), [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED]
)
def test_malformed_binary_is_a_400(
    server: LiveServer, http: httpx.Client, body: bytes, headers: dict[str, str], mentions: str
) -> None:
    deployment = "cities-prod" if b'"city"' in body else "bc-prod"
    response = http.post(f"/v2/models/{deployment}/infer", content=body, headers=headers)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/json"
    assert "x-turnout-prediction-id" not in response.headers  # refused before any model
    error = response.json()["error"]
    assert mentions.lower() in error.lower(), error
    good, good_headers = framed({"inputs": [fp64_input(240)]}, rows()[0].tobytes())
    after = http.post(INFER, content=good, headers=good_headers)
    assert after.status_code == 200, after.text  # still serving, right after
