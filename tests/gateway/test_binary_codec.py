"""The binary tensor data extension's byte layout, without a server: what tritonclient
serializes decodes to the same array, and outputs encode to what tritonclient reads."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tritonclient.utils import deserialize_bytes_tensor, serialize_byte_tensor, triton_to_np_dtype

from turnout.errors import BadRequest
from turnout.gateway import binary

FIXED = sorted(binary.NUMPY_TYPES)


@pytest.mark.parametrize("datatype", FIXED)
@settings(max_examples=25)
@given(shape=st.lists(st.integers(0, 4), min_size=1, max_size=3), seed=st.integers(0, 2**16))
def test_fixed_size_tensors_decode_as_tritonclient_sent_them(
    datatype: str, shape: list[int], seed: int
) -> None:
    dtype = triton_to_np_dtype(datatype)
    values = np.random.default_rng(seed).integers(0, 100, size=shape).astype(dtype)
    decoded = binary.tensor_from_bytes(values.tobytes(), datatype, shape, "x")
    np.testing.assert_array_equal(decoded, values)
    assert decoded.shape == tuple(shape)


@given(st.lists(st.text(max_size=12), min_size=0, max_size=6))
def test_bytes_tensors_round_trip(texts: list[str]) -> None:
    array = np.array([t.encode() for t in texts], dtype=np.object_)
    raw = serialize_byte_tensor(array).item() if texts else b""
    decoded = binary.tensor_from_bytes(raw, "BYTES", [len(texts)], "x")
    assert decoded.tolist() == texts
    encoded = binary.output_bytes(decoded, "BYTES")
    assert encoded == raw
    if texts:
        assert [v.decode() for v in deserialize_bytes_tensor(encoded)] == texts


@pytest.mark.parametrize("datatype", FIXED)
def test_outputs_are_little_endian_in_their_datatype(datatype: str) -> None:
    values = np.arange(6, dtype=np.float64).reshape(2, 3)
    raw = binary.output_bytes(values, datatype)
    read = np.frombuffer(raw, dtype=triton_to_np_dtype(datatype)).reshape(2, 3)
    np.testing.assert_array_equal(read.astype(np.float64), values != 0 if datatype == "BOOL"
                                  else values)  # fmt: skip


def test_inputs_take_their_bytes_in_order() -> None:
    first, second = np.arange(4, dtype=np.int32), np.ones((2, 2), dtype=np.float32)
    request = {
        "inputs": [
            {"name": "a", "shape": [4], "datatype": "INT32",
             "parameters": {"binary_data_size": 16}},
            {"name": "j", "shape": [1], "datatype": "FP64", "data": [1.0]},
            {"name": "b", "shape": [2, 2], "datatype": "FP32",
             "parameters": {"binary_data_size": 16}},
        ]
    }  # fmt: skip
    head = json.dumps(request).encode()
    parsed, raw = binary.split(head + first.tobytes() + second.tobytes(), len(head))
    binary.attach_inputs(parsed, raw)
    np.testing.assert_array_equal(parsed["inputs"][0]["data"], first)
    assert parsed["inputs"][1]["data"] == [1.0]
    np.testing.assert_array_equal(parsed["inputs"][2]["data"], second)


@pytest.mark.parametrize(
    ("value", "mentions"),
    [(b"-1", "non-negative integer"), (b"1.5", "non-negative integer"), (b"", "integer"),
     (b"\xff", "non-negative integer")],
)  # fmt: skip
def test_header_length_must_be_a_count(value: bytes, mentions: str) -> None:
    with pytest.raises(BadRequest, match=mentions):
        binary.header_length(value)


def test_binary_outputs_follow_each_output_then_the_request() -> None:
    request = {
        "parameters": {"binary_data_output": True},
        "outputs": [{"name": "predict"}, {"name": "predict_proba",
                                          "parameters": {"binary_data": False}}],
    }  # fmt: skip
    assert binary.binary_outputs(request) == (False, {"predict"})
    assert binary.binary_outputs({"parameters": {"binary_data_output": True}}) == (True, set())
    assert binary.binary_outputs({}) == (False, set())
