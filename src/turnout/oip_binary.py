"""Open Inference Protocol v2 bodies for the SDK: numpy arrays into an infer request and an
infer response back into arrays, as plain JSON or with the binary tensor data extension
(Triton's: `Inference-Header-Content-Length` bytes of JSON, then each binary tensor's raw
bytes in order, its size in `parameters.binary_data_size`).

Pure functions with no I/O, so the sync and async clients send the same bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from turnout.errors import BadRequest, TurnoutError
from turnout.types import JSON, Array

HEADER_LENGTH = "Inference-Header-Content-Length"

DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
"""Fixed-size OIP datatypes as little-endian numpy types; BYTES is length-prefixed instead."""

_DATATYPES = {dtype.newbyteorder("="): name for name, dtype in DTYPES.items()}
_LENGTH = struct.Struct("<I")


class ResponseError(TurnoutError):
    """An infer response this module cannot read (a server bug or something else answering)."""

    status = HTTPStatus.BAD_GATEWAY


@dataclass(frozen=True)
class Body:
    """An encoded request: the bytes to send and the headers that say how to read them."""

    content: bytes
    headers: dict[str, str]


def datatype(array: Array) -> str:
    """The OIP datatype of a numpy array: strings, bytes and objects are BYTES."""
    if array.dtype.kind in "OSU":
        return "BYTES"
    try:
        return _DATATYPES[array.dtype.newbyteorder("=")]
    except KeyError:
        raise BadRequest(f"numpy dtype {array.dtype} has no Open Inference Protocol type") from None


def raw_bytes(array: Array, datatype: str) -> bytes:
    """A tensor's bytes as the extension carries them: little-endian, row-major; BYTES
    elements each behind a 4-byte little-endian length."""
    if datatype == "BYTES":
        return b"".join(length_prefixed(item) for item in array.ravel(order="C"))
    return np.ascontiguousarray(array, dtype=DTYPES[datatype]).tobytes()


def from_raw(raw: bytes | memoryview, datatype: str, shape: Sequence[int]) -> Array:
    """The inverse of `raw_bytes`; BYTES elements come back as `bytes` in an object array."""
    count = int(np.prod(shape, dtype=np.int64))
    if datatype == "BYTES":
        return _strings(memoryview(raw), count).reshape(shape)
    dtype = _dtype(datatype)
    if len(raw) != count * dtype.itemsize:
        raise ResponseError(
            f"{len(raw)} bytes cannot hold {count} {datatype} values of shape {list(shape)}"
        )
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


def from_json(data: Sequence[Any], datatype: str, shape: Sequence[int]) -> Array:
    """A tensor sent as JSON `data` (flat or nested, row-major); BYTES stay `str`."""
    dtype = np.dtype(object) if datatype == "BYTES" else _dtype(datatype)
    try:
        return np.asarray(data, dtype=dtype).reshape(shape)
    except (TypeError, ValueError) as exc:
        raise ResponseError(
            f"{datatype} data of shape {list(shape)} cannot be read: {exc}"
        ) from None


def encode_request(
    inputs: Mapping[str, npt.ArrayLike],
    *,
    binary: bool,
    outputs: Sequence[str] | None = None,
    request_id: str | None = None,
) -> Body:
    """An infer request for `inputs`; with `binary`, tensors travel as raw bytes and the
    outputs are asked for the same way (all of them, or those named in `outputs`)."""
    header: dict[str, JSON] = {}
    if request_id is not None:
        header["id"] = request_id
    tensors, buffers = [], []
    for name, value in inputs.items():
        array = np.asarray(value)
        kind = datatype(array)
        tensor: dict[str, JSON] = {"name": name, "shape": list(array.shape), "datatype": kind}
        if binary:
            buffers.append(raw_bytes(array, kind))
            tensor["parameters"] = {"binary_data_size": len(buffers[-1])}
        else:
            tensor["data"] = _json_data(array, kind)
        tensors.append(tensor)
    header["inputs"] = tensors
    if outputs is not None:
        header["outputs"] = [
            {"name": name, "parameters": {"binary_data": binary}} for name in outputs
        ]
    elif binary:
        header["parameters"] = {"binary_data_output": True}
    text = orjson.dumps(header)
    if not binary:
        return Body(text, {"content-type": "application/json"})
    headers = {"content-type": "application/octet-stream", HEADER_LENGTH: str(len(text))}
    return Body(b"".join([text, *buffers]), headers)


def decode_response(
    content: bytes, header_length: str | None
) -> tuple[dict[str, Any], dict[str, Array]]:
    """An infer response as (its JSON header, its output tensors by name), whether each
    output came as JSON `data` or as raw bytes after the header."""
    length = len(content) if header_length is None else _length(header_length, len(content))
    try:
        header = orjson.loads(content[:length])
    except orjson.JSONDecodeError as exc:
        raise ResponseError(f"the infer response is not JSON: {exc}") from None
    if not isinstance(header, dict) or not isinstance(header.get("outputs", []), list):
        raise ResponseError("the infer response has no list of outputs")
    tail = memoryview(content)[length:]
    arrays: dict[str, Array] = {}
    for output in header.get("outputs", []):
        name, kind, shape, size = _head(output)
        if size is None:
            arrays[name] = from_json(output.get("data", []), kind, shape)
            continue
        if size > len(tail):
            raise ResponseError(f"output {name} announces {size} bytes, {len(tail)} remain")
        arrays[name], tail = from_raw(tail[:size], kind, shape), tail[size:]
    return header, arrays


def _head(output: Any) -> tuple[str, str, list[int], int | None]:
    """An output's name, datatype, shape and binary size, checked to be what they claim."""
    try:
        name, kind, shape = output["name"], output["datatype"], output["shape"]
        size = (output.get("parameters") or {}).get("binary_data_size")
    except (TypeError, KeyError, AttributeError):
        raise ResponseError(
            f"an infer response output lacks name, datatype or shape: {output!r:.80}"
        ) from None
    valid = isinstance(name, str) and isinstance(kind, str) and isinstance(shape, list)
    if not valid or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise ResponseError(f"an infer response output is malformed: {output!r:.80}")
    if size is not None and (not isinstance(size, int) or size < 0):
        raise ResponseError(f"output {name} has binary_data_size {size!r:.20}")
    return name, kind, shape, size


def _dtype(datatype: str) -> np.dtype[Any]:
    try:
        return DTYPES[datatype]
    except KeyError:
        raise ResponseError(f"unknown tensor datatype {datatype!r}") from None


def _length(value: str, available: int) -> int:
    if not value.strip().isdigit() or int(value) > available:
        raise ResponseError(f"{HEADER_LENGTH} {value!r:.40} does not fit a {available}-byte body")
    return int(value)


def length_prefixed(item: object) -> bytes:
    """One BYTES element as the extension carries it: a 4-byte little-endian length, then
    the bytes (text as UTF-8)."""
    data = item if isinstance(item, bytes) else str(item).encode()
    return _LENGTH.pack(len(data)) + data


def _strings(raw: memoryview, count: int) -> Array:
    values = np.empty(count, dtype=object)
    offset = 0
    for index in range(count):
        if offset + 4 > len(raw):
            raise ResponseError(f"BYTES tensor ends after {index} of {count} elements")
        (size,) = _LENGTH.unpack_from(raw, offset)
        offset += 4
        if offset + size > len(raw):
            raise ResponseError(f"BYTES element {index} runs past the end of its tensor")
        values[index] = bytes(raw[offset : offset + size])
        offset += size
    if offset != len(raw):
        raise ResponseError(f"BYTES tensor has {len(raw) - offset} bytes after its last element")
    return values


def _json_data(array: Array, kind: str) -> list[Any]:
    flat = array.ravel(order="C")
    if kind == "BYTES":
        try:
            return [item.decode() if isinstance(item, bytes) else str(item) for item in flat]
        except UnicodeDecodeError:
            raise BadRequest("BYTES values that are not UTF-8 text need binary=True") from None
    return list(flat.tolist())
