"""The Open Inference Protocol's binary tensor data extension, as Triton defines it for HTTP.

A body announced by `Inference-Header-Content-Length: N` holds N bytes of JSON, then the raw
bytes of every input whose `parameters.binary_data_size` says so, in input order. Outputs go
back the same way when the caller asks. Raw tensors here are also what gRPC's
`raw_input_contents` and `raw_output_contents` hold.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np
import orjson

from turnout.errors import BadRequest
from turnout.oip_binary import DTYPES, length_prefixed
from turnout.types import JSON, Array

HEADER_LENGTH = b"inference-header-content-length"
"""The request and response header that says where the JSON ends (lower case, as ASGI has it)."""

NUMPY_TYPES = DTYPES
"""Fixed-size OIP datatypes as little-endian numpy types (the SDK's table: one wire format)."""

_LENGTH = struct.Struct("<I")


def header_length(value: bytes) -> int:
    """The `Inference-Header-Content-Length` value as a byte count, or a 400 saying why not."""
    text = value.strip()
    if not (text.isdigit() and text.isascii()):
        raise BadRequest(
            f"Inference-Header-Content-Length must be a non-negative integer, got {value!r:.40}"
        )
    return int(text)


def split(body: bytes, length: int) -> tuple[Any, memoryview]:
    """A binary request body as (its JSON header, parsed; the raw tensor bytes after it)."""
    if length > len(body):
        raise BadRequest(
            f"Inference-Header-Content-Length is {length} but the body has only {len(body)} bytes"
        )
    if length == 0:
        raise BadRequest("Inference-Header-Content-Length is 0: the JSON header is missing")
    view = memoryview(body)
    try:
        header = orjson.loads(view[:length])
    except orjson.JSONDecodeError as exc:
        raise BadRequest(
            f"malformed JSON in the first {length} bytes (Inference-Header-Content-Length): {exc}"
        ) from None
    return header, view[length:]


def attach_inputs(request: Any, raw: memoryview) -> None:
    """Give every input that has `binary_data_size` its array from `raw`, in input order;
    every byte of `raw` must belong to exactly one input."""
    inputs = request.get("inputs") if isinstance(request, dict) else None
    if not isinstance(inputs, list):
        raise BadRequest("the request needs a non-empty 'inputs' list")
    offset = 0
    for index, spec in enumerate(inputs):
        size = _binary_size(spec, index)
        if size is None:
            continue
        name, shape, datatype = tensor_head(spec, index)
        if "data" in spec:
            raise BadRequest(f"input {name!r} has both 'data' and parameters.binary_data_size")
        if offset + size > len(raw):
            raise BadRequest(
                f"input {name!r}: binary_data_size is {size} but only {len(raw) - offset} "
                "bytes of binary data remain in the body"
            )
        spec["data"] = tensor_from_bytes(raw[offset : offset + size], datatype, shape, name)
        offset += size
    if offset != len(raw):
        raise BadRequest(
            f"the body has {len(raw)} bytes of binary data but the inputs' binary_data_size "
            f"add up to {offset}"
        )


def _binary_size(spec: Any, index: int) -> int | None:
    parameters = spec.get("parameters") if isinstance(spec, dict) else None
    if not isinstance(parameters, dict) or "binary_data_size" not in parameters:
        return None
    size = parameters["binary_data_size"]
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise BadRequest(
            f"inputs[{index}].parameters.binary_data_size must be a non-negative integer, "
            f"got {size!r:.40}"
        )
    return size


def tensor_head(spec: Any, index: int) -> tuple[str, list[int], str]:
    """An input's name, shape and datatype, each checked."""
    if not isinstance(spec, dict):
        raise BadRequest(f"inputs[{index}] must be an object")
    name, shape, datatype = spec.get("name"), spec.get("shape"), spec.get("datatype")
    if not isinstance(name, str):
        raise BadRequest(f"inputs[{index}].name must be a string")
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise BadRequest(f"input {name!r}: shape must be a list of non-negative integers")
    if not isinstance(datatype, str) or (datatype not in NUMPY_TYPES and datatype != "BYTES"):
        raise BadRequest(f"input {name!r}: unknown datatype {datatype!r}")
    return name, shape, datatype


def tensor_from_bytes(raw: memoryview | bytes, datatype: str, shape: list[int], name: str) -> Array:
    """One tensor's raw bytes as an array of `shape`; fixed-size types are not copied."""
    count = math.prod(shape)
    if datatype == "BYTES":
        return _strings(raw, count, name).reshape(shape)
    dtype = NUMPY_TYPES[datatype]
    if len(raw) != count * dtype.itemsize:
        raise BadRequest(
            f"input {name!r}: shape {shape} of {datatype} needs {count * dtype.itemsize} bytes "
            f"({count} x {dtype.itemsize}), binary_data_size is {len(raw)}"
        )
    if datatype == "BOOL":
        flags: Array = np.frombuffer(raw, dtype=np.uint8).reshape(shape) != 0
        return flags
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


def _strings(raw: memoryview | bytes, count: int, name: str) -> Array:
    """BYTES elements, each a 4-byte little-endian length then that many bytes, as str."""
    values = np.empty(count, dtype=object)
    offset, end = 0, len(raw)
    for i in range(count):
        if offset + 4 > end:
            raise BadRequest(
                f"input {name!r}: BYTES data ends after {i} of {count} elements "
                "(each element is a 4-byte little-endian length, then its bytes)"
            )
        (length,) = _LENGTH.unpack_from(raw, offset)
        offset += 4
        if offset + length > end:
            raise BadRequest(
                f"input {name!r}: BYTES element {i} claims {length} bytes but only "
                f"{end - offset} remain"
            )
        try:
            values[i] = bytes(raw[offset : offset + length]).decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest(f"input {name!r}: BYTES element {i} is not UTF-8 text") from None
        offset += length
    if offset != end:
        raise BadRequest(
            f"input {name!r}: {end - offset} bytes left over after {count} BYTES elements"
        )
    return values


# -- outputs -------------------------------------------------------------------------------


def binary_outputs(request: dict[str, Any]) -> tuple[bool, set[str]]:
    """Which outputs the caller wants as raw bytes, as (all of them, these by name): each
    requested output's `parameters.binary_data`, else the request's
    `parameters.binary_data_output`. Checked before the model is called."""
    parameters = request.get("parameters")
    default = False
    if parameters is not None:
        if not isinstance(parameters, dict):
            raise BadRequest("'parameters' must be an object")
        default = _flag(parameters, "binary_data_output", "parameters") or False
    requested = request.get("outputs")
    if not requested:
        return default, set()
    chosen = set()
    for index, output in enumerate(requested):
        own = output.get("parameters")
        if own is not None and not isinstance(own, dict):
            raise BadRequest(f"outputs[{index}].parameters must be an object")
        own_choice = _flag(own, "binary_data", f"outputs[{index}].parameters") if own else None
        if default if own_choice is None else own_choice:
            chosen.add(output["name"])
    return False, chosen


def _flag(parameters: dict[str, Any], key: str, where: str) -> bool | None:
    value = parameters.get(key)
    if value is None or isinstance(value, bool):
        return value
    raise BadRequest(f"{where}.{key} must be true or false, got {value!r:.40}")


def output_bytes(values: Array, datatype: str) -> bytes:
    """An output tensor's raw bytes for `datatype`, row-major, little-endian."""
    if datatype == "BYTES":
        return b"".join(length_prefixed(v) for v in values.ravel().tolist())
    array = np.ascontiguousarray(values, dtype=NUMPY_TYPES[datatype])
    return array.tobytes()


def encode(header: dict[str, JSON], buffers: list[bytes]) -> tuple[bytes, int]:
    """A response body of JSON header then raw outputs, and the header's length."""
    head = orjson.dumps(header, option=orjson.OPT_SERIALIZE_NUMPY)
    return b"".join([head, *buffers]), len(head)
