"""Models whose inputs are tensors, not tables, against a real `turnout serve`: an ONNX image
model ([N,3,8,8] FP32), an ONNX model with two named inputs of different datatypes, and a
python text model taking an array of strings; over OIP JSON, tritonclient HTTP (binary
tensors) and gRPC, and the native API. Malformed inputs get a 400 that names what is wrong."""

from __future__ import annotations

import concurrent.futures
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import grpc
import httpx
import numpy as np
import orjson
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from tritonclient.grpc import service_pb2 as triton_pb
from tritonclient.grpc import service_pb2_grpc as triton_pb_grpc
from tritonclient.utils import InferenceServerException

from tests.fixtures.server import LiveServer, free_port
from turnout.errors import BadRequest, InvalidArtifact
from turnout.gateway.codec import decode_native, decode_oip
from turnout.monitoring.encoding import TENSOR_LOG_VALUES, LogEntry, prediction_table
from turnout.registry import tensors
from turnout.registry.flavors import Prediction, get_flavor
from turnout.registry.inference import infer_signature
from turnout.registry.signature import DType, Signature, TensorSpec

WEIGHTS = (np.arange(192 * 4, dtype=np.float32).reshape(192, 4) % 7 - 3) / 10
"""The image models' one layer: 3 x 8 x 8 pixels -> 4 scores."""

TEXT_MODEL = """
import time

import numpy as np


class Model:
    inputs = [{"name": "text", "datatype": "BYTES", "shape": [-1]}]

    def predict(self, texts):
        time.sleep(0.02)  # long enough for concurrent requests to queue and share a call
        return np.array([[len(t.split()), len(texts)] for t in texts], dtype=np.int64)
"""
"""Answers [words, rows in the call] per text: the second column shows batching at work."""


def onnx_model(path: Path, *, two_inputs: bool = False, batch: int | str = "N") -> Path:
    """scores = flatten(image) @ WEIGHTS (+ offset, an INT64 [N,4] input, when two)."""
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, [batch, 3, 8, 8])
    scores = helper.make_tensor_value_info("scores", TensorProto.FLOAT, [batch, 4])
    initializers = [
        numpy_helper.from_array(np.array([-1, 192], dtype=np.int64), "flat_shape"),
        numpy_helper.from_array(WEIGHTS, "weights"),
    ]
    nodes = [helper.make_node("Reshape", ["image", "flat_shape"], ["flat"])]
    inputs = [image]
    if two_inputs:
        inputs.append(helper.make_tensor_value_info("offset", TensorProto.INT64, [batch, 4]))
        nodes += [
            helper.make_node("MatMul", ["flat", "weights"], ["product"]),
            helper.make_node("Cast", ["offset"], ["offset_f"], to=TensorProto.FLOAT),
            helper.make_node("Add", ["product", "offset_f"], ["scores"]),
        ]
    else:
        nodes.append(helper.make_node("MatMul", ["flat", "weights"], ["scores"]))
    graph = helper.make_graph(nodes, "tensors", inputs, [scores], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    return path


def scores(image: np.ndarray, offset: np.ndarray | None = None) -> np.ndarray:
    expected = image.reshape(len(image), -1).astype(np.float32) @ WEIGHTS
    return expected if offset is None else expected + offset.astype(np.float32)


def images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 3, 8, 8), dtype=np.float32)


def offsets(n: int) -> np.ndarray:
    return np.arange(n * 4, dtype=np.int64).reshape(n, 4) - 3


TEXTS = ["a cat", "one two three", "", "tensors beyond tables here"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    folder = tmp_path_factory.mktemp("tensors")
    grpc_port = free_port()
    env = {"TURNOUT_GRPC_PORT": str(grpc_port), "TURNOUT_LOG_FLUSH_MS": "200"}
    live = LiveServer(folder / "home", env=env).start()
    live.grpc_url = f"127.0.0.1:{grpc_port}"  # type: ignore[attr-defined]
    try:
        with live.client() as client:
            client.register("img", onnx_model(folder / "img.onnx"), flavor="onnx")
            client.create_deployment("img", model="img")
            pair = onnx_model(folder / "pair.onnx", two_inputs=True)
            client.register("pair", pair, flavor="onnx")
            client.create_deployment("pair", model="pair")
            (folder / "words.py").write_text(TEXT_MODEL)
            client.register("words", folder / "words.py", flavor="python")
            client.create_deployment("words", model="words")
        yield live
    finally:
        live.stop()


@pytest.fixture(scope="module")
def http(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def triton_http(server: LiveServer) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(server.url.removeprefix("http://"))
    yield client
    client.close()


@pytest.fixture(scope="module")
def triton_rpc(server: LiveServer) -> Iterator[triton_grpc.InferenceServerClient]:
    client = triton_grpc.InferenceServerClient(server.grpc_url)  # type: ignore[attr-defined]
    yield client
    client.close()


def oip(name: str, array: np.ndarray, datatype: str, *, nested: bool = False) -> dict[str, Any]:
    data = array.tolist() if nested else array.ravel().tolist()
    return {"name": name, "shape": list(array.shape), "datatype": datatype, "data": data}


def http_input(name: str, array: np.ndarray, datatype: str) -> triton.InferInput:
    tensor = triton.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array)  # binary_data=True, tritonclient's default
    return tensor


def grpc_input(name: str, array: np.ndarray, datatype: str) -> triton_grpc.InferInput:
    tensor = triton_grpc.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    return tensor


def texts(values: list[str]) -> np.ndarray:
    return np.array(values, dtype=np.object_)


# -- metadata ------------------------------------------------------------------------------


@pytest.mark.server
def test_metadata_lists_each_input_with_its_shape(http: httpx.Client) -> None:
    img = http.get("/v2/models/img").json()
    assert img["inputs"] == [{"name": "image", "datatype": "FP32", "shape": [-1, 3, 8, 8]}]
    assert img["outputs"] == [{"name": "predict", "datatype": "FP32", "shape": [-1, 4]}]
    pair = http.get("/v2/models/pair").json()
    assert pair["inputs"] == [
        {"name": "image", "datatype": "FP32", "shape": [-1, 3, 8, 8]},
        {"name": "offset", "datatype": "INT64", "shape": [-1, 4]},
    ]
    words = http.get("/v2/models/words").json()
    assert words["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert words["outputs"] == [{"name": "predict", "datatype": "INT64", "shape": [-1, 2]}]


@pytest.mark.server
def test_grpc_metadata_lists_them_too(triton_rpc: Any) -> None:
    metadata = triton_rpc.get_model_metadata("pair")
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.inputs] == [
        ("image", "FP32", [-1, 3, 8, 8]),
        ("offset", "INT64", [-1, 4]),
    ]
    assert list(metadata.outputs[0].shape) == [-1, 4]


@pytest.mark.server
def test_the_registry_records_the_signature(server: LiveServer) -> None:
    with server.client() as client:
        signature = client.show_version("pair", 1)["signature"]
    assert signature["layout"] == "tensors"
    assert signature["inputs"][1] == {"name": "offset", "datatype": "INT64", "shape": [-1, 4]}
    assert signature["output_shape"] == [-1, 4]


# -- answers, over every transport ------------------------------------------------------------


@pytest.mark.server
@pytest.mark.parametrize("nested", [False, True], ids=["flat", "nested"])
def test_oip_json(http: httpx.Client, nested: bool) -> None:
    x = images(3)
    body = {"id": "img-json", "inputs": [oip("image", x, "FP32", nested=nested)]}
    response = http.post("/v2/models/img/infer", json=body)
    assert response.status_code == 200, response.text
    (output,) = response.json()["outputs"]
    assert output["shape"] == [3, 4]
    assert output["datatype"] == "FP32"
    got = np.array(output["data"], dtype=np.float32).reshape(output["shape"])
    np.testing.assert_allclose(got, scores(x), rtol=1e-5)


@pytest.mark.server
def test_one_input_is_taken_under_any_name(http: httpx.Client) -> None:
    x = images(1)
    response = http.post("/v2/models/img/infer", json={"inputs": [oip("input-0", x, "FP32")]})
    assert response.status_code == 200, response.text
    np.testing.assert_allclose(response.json()["outputs"][0]["data"], scores(x)[0], rtol=1e-5)


@pytest.mark.server
def test_tritonclient_http_binary_defaults(triton_http: Any) -> None:
    x = images(5, seed=1)
    result = triton_http.infer("img", [http_input("image", x, "FP32")])
    assert all("data" not in o for o in result.get_response()["outputs"])
    got = result.as_numpy("predict")
    assert got.shape == (5, 4)
    np.testing.assert_allclose(got, scores(x), rtol=1e-5)


@pytest.mark.server
def test_tritonclient_grpc(triton_rpc: Any) -> None:
    x = images(4, seed=2)
    result = triton_rpc.infer("img", [grpc_input("image", x, "FP32")])
    np.testing.assert_allclose(result.as_numpy("predict"), scores(x), rtol=1e-5)
    x, offset = images(2, seed=3), offsets(2)
    inputs = [grpc_input("offset", offset, "INT64"), grpc_input("image", x, "FP32")]
    result = triton_rpc.infer("pair", inputs)
    np.testing.assert_allclose(result.as_numpy("predict"), scores(x, offset), rtol=1e-5)
    result = triton_rpc.infer("words", [grpc_input("text", texts(TEXTS[:2]), "BYTES")])
    assert result.as_numpy("predict")[:, 0].tolist() == [2, 3]


@pytest.mark.server
def test_grpc_typed_contents(server: LiveServer) -> None:
    """What clients other than tritonclient send: typed contents rather than raw bytes."""
    x = images(2, seed=6)
    request = triton_pb.ModelInferRequest(model_name="img")
    tensor = request.inputs.add(name="image", datatype="FP32", shape=[2, 3, 8, 8])
    tensor.contents.fp32_contents.extend(x.ravel().tolist())
    with grpc.insecure_channel(server.grpc_url) as channel:  # type: ignore[attr-defined]
        response = triton_pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request)
    (output,) = response.outputs
    assert list(output.shape) == [2, 4]
    got = np.frombuffer(response.raw_output_contents[0], dtype="<f4").reshape(2, 4)
    np.testing.assert_allclose(got, scores(x), rtol=1e-5)


@pytest.mark.server
def test_two_inputs_matched_by_name(http: httpx.Client, triton_http: Any) -> None:
    x, offset = images(3, seed=4), offsets(3)
    expected = scores(x, offset)
    inputs = [http_input("offset", offset, "INT64"), http_input("image", x, "FP32")]
    result = triton_http.infer("pair", inputs)
    np.testing.assert_allclose(result.as_numpy("predict"), expected, rtol=1e-5)
    body = {"inputs": [oip("offset", offset, "INT64"), oip("image", x, "FP32", nested=True)]}
    response = http.post("/v2/models/pair/infer", json=body)
    assert response.status_code == 200, response.text
    np.testing.assert_allclose(response.json()["outputs"][0]["data"], expected.ravel(), rtol=1e-5)


@pytest.mark.server
def test_text_inputs(http: httpx.Client, triton_http: Any) -> None:
    body = {"inputs": [{"name": "text", "shape": [4], "datatype": "BYTES", "data": TEXTS}]}
    response = http.post("/v2/models/words/infer", json=body)
    assert response.status_code == 200, response.text
    (output,) = response.json()["outputs"]
    assert output["shape"] == [4, 2]
    assert output["data"][::2] == [2, 3, 0, 4]
    result = triton_http.infer("words", [http_input("text", texts(TEXTS), "BYTES")])
    assert result.as_numpy("predict")[:, 0].tolist() == [2, 3, 0, 4]


@pytest.mark.server
def test_native_api_and_kserve_v1(http: httpx.Client) -> None:
    x = images(2, seed=5)
    response = http.post("/v1/deployments/img/predict", json={"instances": x.tolist()})
    assert response.status_code == 200, response.text
    np.testing.assert_allclose(response.json()["predictions"], scores(x), rtol=1e-5)
    offset = offsets(2)
    records = [{"image": x[i].tolist(), "offset": offset[i].tolist()} for i in range(2)]
    response = http.post("/v1/models/pair:predict", json={"instances": records})
    assert response.status_code == 200, response.text
    np.testing.assert_allclose(response.json()["predictions"], scores(x, offset), rtol=1e-5)
    columns = {"image": x.tolist(), "offset": offset.tolist()}
    response = http.post("/v1/deployments/pair/invocations", json={"inputs": columns})
    assert response.status_code == 200, response.text
    np.testing.assert_allclose(response.json()["predictions"], scores(x, offset), rtol=1e-5)
    response = http.post("/v1/models/words:predict", json={"instances": TEXTS[:2]})
    assert [row[0] for row in response.json()["predictions"]] == [2, 3]
    csv = "text\na cat\none two three\n"
    response = http.post(
        "/invocations",
        content=csv,
        headers={"content-type": "text/csv", "x-turnout-deployment": "words"},
    )
    assert response.status_code == 200, response.text
    assert [row[0] for row in response.json()["predictions"]] == [2, 3]


# -- malformed inputs ------------------------------------------------------------------------

X2 = images(2)


@pytest.mark.server
@pytest.mark.parametrize(
    ("model", "inputs", "message"),
    [
        ("img", [oip("image", np.zeros((2, 3, 8, 9), np.float32), "FP32")],
         "shape [2, 3, 8, 9] does not match the model's [-1, 3, 8, 8]"),
        ("img", [oip("image", X2.reshape(2, 192), "FP32")],
         "shape [2, 192] does not match the model's [-1, 3, 8, 8]"),
        ("img", [oip("image", X2.astype(np.float64), "FP64")],
         "datatype FP64, but the model takes FP32"),
        ("img", [{**oip("image", X2, "FP32"), "data": X2.ravel().tolist()[:-1]}],
         "needs 384 values, data has 383"),
        ("img", [{**oip("image", X2, "FP32"), "data": ["dark"] * 384}],
         "FP32 data holds str 'dark'"),
        ("img", [{**oip("image", X2, "FP32"), "data": [None] * 384}],
         "null (a tensor cannot hold missing values)"),
        ("img", [{**oip("image", X2, "FP32"), "data": [[0.0] * 3, [0.0]]}],
         "not a regular array"),
        ("img", [{"name": "image", "shape": [0, 3, 8, 8], "datatype": "FP32", "data": []}],
         "no rows"),
        ("pair", [oip("image", X2, "FP32")], "missing inputs ['offset']"),
        ("pair", [oip("image", X2, "FP32"), oip("offset", offsets(2), "INT64"),
                  oip("extra", offsets(2), "INT64")], "unknown inputs ['extra']"),
        ("pair", [oip("image", X2, "FP32"), oip("offset", offsets(3), "INT64")],
         "different batch sizes"),
        ("pair", [oip("image", X2, "FP32"), {**oip("offset", offsets(2), "INT64"),
                                             "data": [0.5] * 8}], "float 0.5, not an integer"),
        ("pair", [oip("image", X2, "FP32"), oip("offset", offsets(2), "FP32")],
         "input 'offset': datatype FP32, but the model takes INT64"),
        ("words", [{"name": "text", "shape": [2], "datatype": "BYTES", "data": ["a", 3]}],
         "BYTES data holds int 3, not text"),
        ("words", [{"name": "text", "shape": [2, 1], "datatype": "BYTES", "data": ["a", "b"]}],
         "shape [2, 1] does not match the model's [-1]"),
    ],
)  # fmt: skip
def test_malformed_json_is_a_400_naming_it(
    http: httpx.Client, model: str, inputs: list[Any], message: str
) -> None:
    response = http.post(f"/v2/models/{model}/infer", json={"inputs": inputs})
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]


@pytest.mark.server
@pytest.mark.parametrize(
    ("model", "body", "message"),
    [
        ("img", {"instances": [[0.0] * 192]}, "shape [1, 192] does not match"),
        ("pair", {"instances": [{"image": X2[0].tolist()}]}, "instance 0 lacks inputs ['offset']"),
        ("pair", {"instances": [X2[0].tolist()]}, "send records by input name"),
        ("img", {"dataframe_split": {"columns": ["a"], "data": [[1]]}},
         "instance 0 lacks inputs ['image']"),
        ("img", {"dataframe_split": {"columns": ["a"], "data": [1]}}, "needs 'columns' naming"),
    ],
)  # fmt: skip
def test_malformed_native_is_a_400(
    http: httpx.Client, model: str, body: dict[str, Any], message: str
) -> None:
    response = http.post(f"/v1/deployments/{model}/predict", json=body)
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]


@pytest.mark.server
def test_malformed_binary_and_grpc(triton_http: Any, triton_rpc: Any) -> None:
    wrong = np.zeros((1, 3, 8, 7), dtype=np.float32)
    with pytest.raises(InferenceServerException, match=r"does not match the model's"):
        triton_http.infer("img", [http_input("image", wrong, "FP32")])
    with pytest.raises(InferenceServerException, match=r"datatype FP64, but the model takes FP32"):
        triton_rpc.infer("img", [grpc_input("image", images(1).astype(np.float64), "FP64")])
    with pytest.raises(InferenceServerException, match=r"missing inputs \['image'\]"):
        triton_rpc.infer("pair", [grpc_input("offset", offsets(1), "INT64")])
    x = images(2, seed=9)  # and nothing else is affected
    result = triton_rpc.infer("img", [grpc_input("image", x, "FP32")])
    np.testing.assert_allclose(result.as_numpy("predict"), scores(x), rtol=1e-5)


# -- batching ----------------------------------------------------------------------------------


@pytest.mark.server
def test_concurrent_requests_share_calls_and_each_gets_its_own_answer(server: LiveServer) -> None:
    def words(i: int) -> list[list[int]]:
        batch = [" ".join(["w"] * (i + j)) for j in range(2)]
        body = {"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": batch}]}
        response = httpx.post(f"{server.url}/v2/models/words/infer", json=body, timeout=60)
        assert response.status_code == 200, response.text
        data = response.json()["outputs"][0]["data"]
        return [data[0:2], data[2:4]]

    def image(i: int) -> None:
        x = images(2, seed=100 + i)
        offset = offsets(2) * i
        body = {"inputs": [oip("image", x, "FP32"), oip("offset", offset, "INT64")]}
        response = httpx.post(f"{server.url}/v2/models/pair/infer", json=body, timeout=60)
        assert response.status_code == 200, response.text
        got = np.array(response.json()["outputs"][0]["data"]).reshape(2, 4)
        np.testing.assert_allclose(got, scores(x, offset), rtol=1e-5)

    def binary(i: int) -> None:
        x = images(1 + i % 3, seed=200 + i)
        client = triton.InferenceServerClient(server.url.removeprefix("http://"))
        try:
            result = client.infer("img", [http_input("image", x, "FP32")])
        finally:
            client.close()
        np.testing.assert_allclose(result.as_numpy("predict"), scores(x), rtol=1e-5)

    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(words, range(48)))
        list(pool.map(image, range(32)))
        list(pool.map(binary, range(32)))
    for i, answer in enumerate(answers):
        assert [row[0] for row in answer] == [i, i + 1]
    assert max(row[1] for answer in answers for row in answer) > 2, "no two requests shared a call"


# -- logging -------------------------------------------------------------------------------


@pytest.mark.server
def test_tensor_inputs_are_logged_in_their_shapes(server: LiveServer, http: httpx.Client) -> None:
    x, offset = images(1, seed=7), offsets(1)
    for model, inputs in (
        ("img", [oip("image", x, "FP32")]),
        ("pair", [oip("image", x, "FP32"), oip("offset", offset, "INT64")]),
        ("words", [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["hi there"]}]),
    ):
        body = {"id": f"logged-{model}", "inputs": inputs}
        assert http.post(f"/v2/models/{model}/infer", json=body).status_code == 200
    logged = _logged_inputs(server, ["logged-img", "logged-pair", "logged-words"])
    np.testing.assert_allclose(logged["logged-img"], x[0], rtol=1e-6)
    assert logged["logged-pair"]["offset"] == offset[0].tolist()
    np.testing.assert_allclose(logged["logged-pair"]["image"], x[0], rtol=1e-6)
    assert logged["logged-words"] == "hi there"


def _logged_inputs(server: LiveServer, ids: list[str], timeout_s: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    found: dict[str, Any] = {}
    while time.monotonic() < deadline:
        files = sorted(str(p) for p in (server.home / "artifacts" / "log").rglob("*.parquet"))
        if files:
            with duckdb.connect() as con:
                rows = con.execute(
                    "select prediction_id, inputs from read_parquet(?, union_by_name=true) "
                    "where list_contains(?, prediction_id)",
                    [files, ids],
                ).fetchall()
            found = {pid: orjson.loads(inputs) for pid, inputs in rows}
            if set(found) == set(ids):
                return found
        time.sleep(0.2)
    pytest.fail(f"not logged within {timeout_s} s: {sorted(set(ids) - set(found))}")


def test_packed_rows_give_back_every_input_exactly() -> None:
    specs = [
        TensorSpec("pixels", DType.UINT8, (-1, 2, 2)),
        TensorSpec("ids", DType.INT64, (-1, 3)),
        TensorSpec("scale", DType.FP16, (-1,)),
        TensorSpec("mask", DType.BOOL, (-1, 3)),
    ]
    rng = np.random.default_rng(0)
    arrays: list[np.ndarray] = [
        rng.integers(0, 255, (4, 2, 2), dtype=np.uint8),
        rng.integers(-(2**62), 2**62, (4, 3), dtype=np.int64),
        rng.random(4).astype(np.float16),
        rng.random((4, 3)) > 0.5,
    ]
    for with_text in (False, True):
        chosen = [*specs, TensorSpec("text", DType.BYTES, (-1,))] if with_text else specs
        given: list[np.ndarray] = [*arrays, np.array(list("abcd"), dtype=object)]
        given = given if with_text else arrays
        parts = [tensors.pack([a[:1] for a in given], chosen),
                 tensors.pack([a[1:] for a in given], chosen)]  # fmt: skip
        rows = np.concatenate(parts)  # as the batcher joins requests
        assert rows.dtype == (np.dtype(object) if with_text else np.uint8)
        for spec, array, back in zip(chosen, given, tensors.unpack(rows, chosen), strict=True):
            np.testing.assert_array_equal(back, array)
            assert back.dtype == spec.dtype.numpy


def test_large_tensors_are_logged_as_omitted() -> None:
    spec = TensorSpec("image", DType.FP32, (-1, 3, 40, 40))
    rows = tensors.pack([np.zeros((2, 3, 40, 40), np.float32)], [spec])
    entry = LogEntry(
        "big", 1, "big", 1, "champion", ["a", "b"], time.time(), 1.0, "ok",
        rows, Prediction(np.zeros(2)), None, (spec,),
    )  # fmt: skip
    inputs = prediction_table("big", [entry]).column("inputs").to_pylist()
    assert [orjson.loads(text) for text in inputs] == [
        {"omitted": f"tensor inputs of 4800 values per row; the log keeps those of up to "
                    f"{TENSOR_LOG_VALUES}"}
    ] * 2  # fmt: skip


# -- junk never gets past the decoder as anything but a 400 ---------------------------------

SIGNATURES = [
    Signature(columns=(), named=False, tensors=specs)
    for specs in (
        (TensorSpec("image", DType.FP32, (-1, 2, 2)),),
        (TensorSpec("image", DType.FP32, (-1, 2)), TensorSpec("offset", DType.INT64, (-1,))),
        (TensorSpec("text", DType.BYTES, (-1,)),),
        (TensorSpec("flag", DType.BOOL, (-1, 1)), TensorSpec("text", DType.BYTES, (-1, 2))),
    )
]
scalars = st.one_of(
    st.floats(allow_nan=False, width=32), st.integers(-(2**65), 2**65), st.booleans(),
    st.none(), st.text(max_size=3),
)  # fmt: skip
junk = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=20,
)


@st.composite
def plausible(draw: st.DrawFn) -> dict[str, Any]:
    """An input whose data usually fits its shape, so decoding gets past the first checks."""
    shape = draw(st.lists(st.integers(0, 3), min_size=1, max_size=3))
    flat = draw(st.lists(scalars, min_size=math.prod(shape), max_size=math.prod(shape)))
    data = np.array(flat, dtype=object).reshape(shape).tolist() if draw(st.booleans()) else flat
    return {
        "name": draw(st.sampled_from(["image", "offset", "text", "flag", "other"])),
        "shape": shape,
        "datatype": draw(st.sampled_from(["FP32", "INT64", "BYTES", "BOOL", "FP64"])),
        "data": data,
    }


def rows_or_message(decode: Any, signature: Signature) -> None:
    """Decoding gives rows of the signature's width, or a BadRequest with a message."""
    message: str | None
    try:
        rows = decode()
    except BadRequest as exc:
        message = exc.message
    else:
        message = None
    if message is not None:
        assert message
        return
    assert rows.ndim == 2
    assert rows.shape[0] >= 1
    for spec, array in zip(signature.tensors, tensors.unpack(rows, signature.tensors), strict=True):
        assert array.shape == (len(rows), *spec.item_shape)
        assert array.dtype == spec.dtype.numpy


@settings(max_examples=200, deadline=None)
@given(inputs=st.lists(plausible() | junk, max_size=3), signature=st.sampled_from(SIGNATURES))
def test_oip_junk_is_only_ever_a_bad_request(inputs: Any, signature: Signature) -> None:
    rows_or_message(lambda: decode_oip({"inputs": inputs}, signature)[0], signature)


@settings(max_examples=200, deadline=None)
@given(
    body=st.dictionaries(
        st.sampled_from(["instances", "inputs", "dataframe_split", "dataframe_records"]), junk
    ),
    signature=st.sampled_from(SIGNATURES),
)
def test_native_junk_is_only_ever_a_bad_request(body: Any, signature: Signature) -> None:
    rows_or_message(lambda: decode_native(body, signature), signature)


# -- registration ----------------------------------------------------------------------------


def test_a_model_with_batch_size_one_runs_rows_one_by_one(tmp_path: Path) -> None:
    model = get_flavor("onnx").load(onnx_model(tmp_path / "one.onnx", batch=1))
    signature = infer_signature(model, model.facts(), None)
    assert signature.tensors[0].shape == (-1, 3, 8, 8)
    x = images(3)
    np.testing.assert_allclose(model.predict(x).values, scores(x), rtol=1e-5)


def test_dimensions_beyond_the_batch_must_be_fixed(tmp_path: Path) -> None:
    path = tmp_path / "dynamic.onnx"
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, "H", "W"])
    out = helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 3, "H", "W"])
    graph = helper.make_graph(
        [helper.make_node("Identity", ["image"], ["out"])], "g", [image], [out]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    with pytest.raises(InvalidArtifact, match="must have a fixed size"):
        get_flavor("onnx").load(path)


def test_a_shadows_tensor_inputs_are_logged_in_their_shapes_too(
    server: LiveServer, http: httpx.Client, tmp_path: Path
) -> None:
    with server.client() as client:
        client.register("shadowed", onnx_model(tmp_path / "a.onnx"), flavor="onnx")
        client.register("shadowed", onnx_model(tmp_path / "b.onnx"), flavor="onnx")
        client.create_deployment("shadowed", model="shadowed", version=1)
        client.route("shadowed", shadows={2: 100})
    x = images(1, seed=11)
    body = {"id": "mirrored", "inputs": [oip("image", x, "FP32")]}
    assert http.post("/v2/models/shadowed/infer", json=body).status_code == 200
    deadline = time.monotonic() + 30
    rows: list[tuple[str, str]] = []
    while len(rows) < 2:
        assert time.monotonic() < deadline, f"logged: {rows}"
        time.sleep(0.2)
        files = sorted(str(p) for p in (server.home / "artifacts" / "log").rglob("*.parquet"))
        if files:
            with duckdb.connect() as con:
                rows = con.execute(
                    "select role, inputs from read_parquet(?, union_by_name=true) "
                    "where prediction_id = 'mirrored'",
                    [files],
                ).fetchall()
    logged = {role: orjson.loads(inputs) for role, inputs in rows}
    assert set(logged) == {"champion", "shadow"}
    np.testing.assert_allclose(logged["shadow"], x[0], rtol=1e-6)
    assert logged["shadow"] == logged["champion"]
