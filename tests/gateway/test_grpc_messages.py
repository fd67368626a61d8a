"""OIP gRPC messages <-> the codec's request dicts and raw outputs, without a server."""

from __future__ import annotations

import numpy as np
import pytest
from tritonclient.grpc import service_pb2 as triton_pb

from turnout.errors import BadRequest
from turnout.gateway.grpc import grpc_predict_v2_pb2 as pb
from turnout.gateway.grpc import messages
from turnout.registry.flavors import Prediction


def request_with(datatype: str, shape: list[int]) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="m", id="r-1")
    request.inputs.add(name="x", datatype=datatype, shape=shape)
    return request


@pytest.mark.parametrize(
    ("datatype", "field", "values"),
    [
        ("BOOL", "bool_contents", [True, False]),
        ("INT8", "int_contents", [-3, 4]),
        ("INT32", "int_contents", [-3, 4]),
        ("INT64", "int64_contents", [-(2**40), 5]),
        ("UINT16", "uint_contents", [3, 65535]),
        ("UINT64", "uint64_contents", [2**40, 1]),
        ("FP32", "fp32_contents", [0.5, -1.25]),
        ("FP64", "fp64_contents", [0.1, 2.0]),
    ],
)
def test_typed_contents_become_arrays(datatype: str, field: str, values: list[object]) -> None:
    request = request_with(datatype, [1, 2])
    getattr(request.inputs[0].contents, field).extend(values)
    body = messages.infer_request(request)
    data = body["inputs"][0]["data"]
    assert data.shape == (1, 2)
    assert data.ravel().tolist() == values
    assert body["id"] == "r-1"


def test_raw_contents_are_read_without_a_copy() -> None:
    rows = np.arange(6, dtype="<f8").reshape(2, 3)
    request = request_with("FP64", [2, 3])
    request.raw_input_contents.append(rows.tobytes())
    data = messages.infer_request(request)["inputs"][0]["data"]
    np.testing.assert_array_equal(data, rows)
    assert not data.flags.owndata


def test_bytes_in_typed_and_raw_contents() -> None:
    typed = request_with("BYTES", [2])
    typed.inputs[0].contents.bytes_contents.extend([b"a", "é".encode()])
    assert messages.infer_request(typed)["inputs"][0]["data"].tolist() == ["a", "é"]
    raw = request_with("BYTES", [1])
    raw.raw_input_contents.append(b"\x02\x00\x00\x00hi")
    assert messages.infer_request(raw)["inputs"][0]["data"].tolist() == ["hi"]


@pytest.mark.parametrize(
    ("build", "says"),
    [
        (lambda r: r.inputs[0].contents.fp64_contents.extend([1.0]), "needs 2 values"),
        (lambda r: r.raw_input_contents.extend([b"\0" * 16, b""]), "2 entries for 1 inputs"),
        (lambda r: r.raw_input_contents.append(b"\0" * 8), "needs 16 bytes"),
    ],
)
def test_contents_that_do_not_fit_are_refused(build: object, says: str) -> None:
    request = request_with("FP64", [1, 2])
    build(request)  # type: ignore[operator]
    with pytest.raises(BadRequest, match=says):
        messages.infer_request(request)


def test_both_raw_and_typed_contents_are_refused() -> None:
    request = request_with("FP64", [1])
    request.inputs[0].contents.fp64_contents.append(1.0)
    request.raw_input_contents.append(b"\0" * 8)
    with pytest.raises(BadRequest, match="both typed contents and raw_input_contents"):
        messages.infer_request(request)


def test_fp16_needs_raw_contents() -> None:
    with pytest.raises(BadRequest, match="FP16 has no typed contents"):
        messages.infer_request(request_with("FP16", [1]))
    raw = request_with("FP16", [2])
    raw.raw_input_contents.append(np.array([0.5, 2.0], dtype="<f2").tobytes())
    assert messages.infer_request(raw)["inputs"][0]["data"].tolist() == [0.5, 2.0]


def test_parameters_and_requested_outputs() -> None:
    request = request_with("FP64", [1])
    request.inputs[0].contents.fp64_contents.append(1.0)
    request.parameters["user"].string_param = "u-7"
    request.parameters["n"].int64_param = 3
    request.outputs.add(name="predict")
    body = messages.infer_request(request)
    assert body["parameters"] == {"user": "u-7", "n": 3}
    assert body["outputs"] == [{"name": "predict"}]


@pytest.mark.parametrize(("text", "number"), [("", None), ("3", 3)])
def test_version_numbers(text: str, number: int | None) -> None:
    assert messages.version_number(text) == number


@pytest.mark.parametrize("text", ["0", "-1", "v2", "²"])
def test_bad_version_numbers(text: str) -> None:
    with pytest.raises(BadRequest, match="positive integer"):
        messages.version_number(text)


def test_outputs_are_raw_and_readable_by_tritonclient_messages() -> None:
    prediction = Prediction(np.array([0, 1], dtype=np.int64), np.array([[0.9, 0.1], [0.2, 0.8]]))
    response = messages.infer_response(
        prediction, None, name="d", version=3, request_id="r", response_parameters={"role": "x"}
    )
    theirs = triton_pb.ModelInferResponse.FromString(response.SerializeToString())
    assert [(o.name, o.datatype, list(o.shape)) for o in theirs.outputs] == [
        ("predict", "INT64", [2]),
        ("predict_proba", "FP64", [2, 2]),
    ]
    assert np.frombuffer(theirs.raw_output_contents[0], "<i8").tolist() == [0, 1]
    assert np.frombuffer(theirs.raw_output_contents[1], "<f8").tolist() == [0.9, 0.1, 0.2, 0.8]
    assert (theirs.model_version, theirs.id) == ("3", "r")
    assert theirs.parameters["role"].string_param == "x"


def test_object_outputs_go_as_text() -> None:
    values = np.empty(3, dtype=object)
    values[:] = ["yes", 2, {"score": 1.0}]
    response = messages.infer_response(
        Prediction(values), None, name="d", version=1, request_id="r", response_parameters={}
    )
    assert response.outputs[0].datatype == "BYTES"
    raw = response.raw_output_contents[0]
    assert raw == b"".join(
        len(t).to_bytes(4, "little") + t for t in (b"yes", b"2", b'{"score":1.0}')
    )
