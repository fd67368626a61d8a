"""The SDK's OIP bodies agree byte for byte with tritonclient's encoding, and read what
tritonclient reads."""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np
import pytest
import tritonclient.http as httpclient
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from tritonclient.http._utils import _get_inference_request
from tritonclient.utils import deserialize_bytes_tensor, np_to_triton_dtype, serialize_byte_tensor

from turnout import oip_binary
from turnout.errors import BadRequest
from turnout.oip_binary import HEADER_LENGTH, ResponseError, decode_response, encode_request
from turnout.types import Array

NUMERIC = [
    np.bool_, np.uint8, np.uint16, np.uint32, np.uint64, np.int8, np.int16, np.int32,
    np.int64, np.float16, np.float32, np.float64,
]  # fmt: skip


def triton_request(
    arrays: dict[str, Array], *, binary: bool, outputs: list[str] | None = None
) -> tuple[dict[str, Any], bytes]:
    """What tritonclient sends for the same tensors: (its JSON header, the bytes after it)."""
    inputs = []
    for name, array in arrays.items():
        tensor = httpclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        tensor.set_data_from_numpy(array, binary_data=binary)
        inputs.append(tensor)
    wanted = [httpclient.InferRequestedOutput(n, binary_data=binary) for n in outputs or []]
    body, json_size = _get_inference_request(inputs, "7", wanted, 0, False, False, 0, None, None)
    size = len(body) if json_size is None else json_size
    return json.loads(body[:size]), body[size:]


def ours(body: oip_binary.Body) -> tuple[dict[str, Any], bytes]:
    size = int(body.headers.get(HEADER_LENGTH, len(body.content)))
    return json.loads(body.content[:size]), body.content[size:]


@pytest.mark.parametrize("dtype", NUMERIC)
@pytest.mark.parametrize("binary", [True, False])
def test_numeric_requests_match_tritonclient(dtype: type[np.generic], binary: bool) -> None:
    rng = np.random.default_rng(3)
    arrays = {
        "a": (rng.random((3, 4)) * 100).astype(dtype),
        "b": np.arange(5).astype(dtype),
    }

    body = encode_request(arrays, binary=binary, outputs=["predict"], request_id="7")

    assert ours(body) == triton_request(arrays, binary=binary, outputs=["predict"])
    if binary:
        assert body.headers["content-type"] == "application/octet-stream"
    else:
        assert HEADER_LENGTH not in body.headers


def test_bytes_tensors_match_tritonclient() -> None:
    arrays = {
        "text": np.array([[b"churn", b""], ["caf\u00e9".encode(), b"\x00\xff"]], dtype=object)
    }

    header, tail = ours(encode_request(arrays, binary=True, request_id="7"))

    assert (header, tail) == triton_request(arrays, binary=True)
    assert tail == serialize_byte_tensor(arrays["text"]).item()
    assert header["parameters"] == {"binary_data_output": True}


def test_strings_are_sent_as_bytes_and_in_json_as_text() -> None:
    words = np.array(["yes", "no", "caf\u00e9"])

    header, tail = ours(encode_request({"w": words}, binary=True))
    plain, _ = ours(encode_request({"w": words}, binary=False))

    assert header["inputs"][0]["datatype"] == "BYTES"
    assert list(deserialize_bytes_tensor(tail)) == [w.encode() for w in words]
    assert plain["inputs"][0]["data"] == ["yes", "no", "caf\u00e9"]


def test_bytes_that_are_not_text_need_binary() -> None:
    raw = np.array([b"\xff\xfe"], dtype=object)
    with pytest.raises(BadRequest, match="not UTF-8 text need binary=True"):
        encode_request({"raw": raw}, binary=False)
    assert ours(encode_request({"raw": raw}, binary=True))[1] == b"\x02\0\0\0\xff\xfe"


def test_a_dtype_without_an_oip_type_is_refused() -> None:
    with pytest.raises(BadRequest, match="complex128 has no Open Inference Protocol type"):
        encode_request({"z": np.ones(2, dtype=complex)}, binary=True)


def binary_response(
    outputs: dict[str, Array], *, as_json: frozenset[str] = frozenset()
) -> tuple[bytes, int]:
    """A response the way a server with the extension writes it: JSON header, raw tensors."""
    heads, buffers = [], []
    for name, array in outputs.items():
        kind = np_to_triton_dtype(array.dtype) if array.dtype != object else "BYTES"
        head: dict[str, Any] = {"name": name, "datatype": kind, "shape": list(array.shape)}
        if name in as_json:
            head["data"] = array.ravel().tolist()
        else:
            raw = serialize_byte_tensor(array).item() if kind == "BYTES" else array.tobytes()
            buffers.append(raw)
            head["parameters"] = {"binary_data_size": len(raw)}
        heads.append(head)
    header = json.dumps({"model_name": "m", "model_version": "1", "outputs": heads}).encode()
    return header + b"".join(buffers), len(header)


def test_binary_responses_read_as_tritonclient_reads_them() -> None:
    outputs = {
        "predict": np.array([0, 1, 1], dtype=np.int64),
        "predict_proba": np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6]]),
        "label": np.array([b"no", b"yes", b"yes"], dtype=object),
        "score": np.array([1.5, 2.5], dtype=np.float32),
    }
    body, length = binary_response(outputs, as_json=frozenset({"score"}))

    header, arrays = decode_response(body, str(length))
    theirs = httpclient.InferResult.from_response_body(body, header_length=length)

    assert header["model_version"] == "1"
    assert list(arrays) == list(outputs)
    for name, expected in outputs.items():
        np.testing.assert_array_equal(arrays[name], expected)
        np.testing.assert_array_equal(arrays[name], theirs.as_numpy(name))
        assert arrays[name].dtype == theirs.as_numpy(name).dtype


def test_json_responses_are_read_too() -> None:
    body = json.dumps({
        "model_name": "m", "id": "x",
        "outputs": [{"name": "predict", "datatype": "FP32", "shape": [2, 2], "data": [1, 2, 3, 4]}],
    }).encode()  # fmt: skip

    header, arrays = decode_response(body, None)

    assert header["id"] == "x"
    np.testing.assert_array_equal(arrays["predict"], np.array([[1, 2], [3, 4]], dtype=np.float32))


def framed(output: dict[str, Any], tail: bytes) -> tuple[bytes, str]:
    header = json.dumps({"outputs": [output]}).encode()
    return header + tail, str(len(header))


FP64_2 = {"name": "p", "datatype": "FP64", "shape": [2]}


@pytest.mark.parametrize(
    ("body", "length", "message"),
    [
        (b'{"outputs": []}', "99", "does not fit a 15-byte body"),
        (b'{"outputs": []}', "-1", "does not fit"),
        (b"not json", None, "not JSON"),
        (b'{"outputs": [{"name": "p"}]}', None, "lacks name, datatype or shape"),
        (b'{"outputs": [{"name": "p", "datatype": "INT8", "shape": [-1]}]}', None, "malformed"),
        (b'{"outputs": [{"name": "p", "datatype": "INT3", "shape": [1], "data": [1]}]}', None,
         "unknown tensor datatype"),
        (b'{"outputs": [{"name": "p", "datatype": "INT8", "shape": [3], "data": [1]}]}', None,
         "cannot be read"),
        (*framed({**FP64_2, "parameters": {"binary_data_size": 16}}, bytes(8)),
         "announces 16 bytes"),
        (*framed({**FP64_2, "parameters": {"binary_data_size": 8}}, bytes(8)),
         "8 bytes cannot hold 2"),
        (*framed({**FP64_2, "parameters": {"binary_data_size": -8}}, bytes(8)),
         "binary_data_size -8"),
        (*framed({"name": "p", "datatype": "BYTES", "shape": [1],
                  "parameters": {"binary_data_size": 6}}, struct.pack("<I", 9) + b"ab"),
         "runs past the end"),
    ],
)  # fmt: skip
def test_unreadable_responses_say_why(body: bytes, length: str | None, message: str) -> None:
    with pytest.raises(ResponseError, match=message):
        decode_response(body, length)


@given(
    hnp.arrays(
        st.sampled_from([np.dtype(t) for t in NUMERIC]),
        hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=4),
    )
)
def test_raw_bytes_round_trip(array: Array) -> None:
    kind = oip_binary.datatype(array)
    back = oip_binary.from_raw(oip_binary.raw_bytes(array, kind), kind, array.shape)
    np.testing.assert_array_equal(back, array)
    assert back.dtype == array.dtype


@given(st.lists(st.binary(max_size=12), max_size=6))
def test_bytes_round_trip(items: list[bytes]) -> None:
    array = np.empty(len(items), dtype=object)
    array[:] = items
    raw = oip_binary.raw_bytes(array, "BYTES")
    assert raw == (serialize_byte_tensor(array).item() if items else b"")
    assert list(oip_binary.from_raw(raw, "BYTES", [len(items)])) == items
