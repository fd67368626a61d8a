"""Messages between the gateway and its runner processes: length-prefixed frames of a JSON
header and raw array bytes. No pickle: numbers travel as bytes, anything else as JSON."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import orjson

from turnout.types import JSON, Array

LENGTH = struct.Struct(">I")
MAX_FRAME = 1 << 30


def _spec(array: Array) -> tuple[dict[str, JSON], bytes]:
    if array.dtype.kind in "biuf":
        data = np.ascontiguousarray(array).tobytes()
        return {"dtype": array.dtype.str, "shape": list(array.shape), "nbytes": len(data)}, data
    data = orjson.dumps(array.tolist(), option=orjson.OPT_SERIALIZE_NUMPY)
    return {"dtype": "json", "shape": list(array.shape), "nbytes": len(data)}, data


def _array(spec: dict[str, Any], data: bytes) -> Array:
    if spec["dtype"] == "json":
        return np.array(orjson.loads(data), dtype=object).reshape(spec["shape"])
    return np.frombuffer(data, dtype=np.dtype(spec["dtype"])).reshape(spec["shape"])


def encode(header: dict[str, JSON], arrays: list[Array | None]) -> bytes:
    """One frame: length, header length, header JSON (with array specs), array bytes."""
    specs: list[dict[str, JSON] | None] = []
    chunks = []
    for array in arrays:
        if array is None:
            specs.append(None)
            continue
        spec, data = _spec(array)
        specs.append(spec)
        chunks.append(data)
    head = orjson.dumps({**header, "arrays": specs})
    body = LENGTH.pack(len(head)) + head + b"".join(chunks)
    return LENGTH.pack(len(body)) + body


def decode(body: bytes) -> tuple[dict[str, Any], list[Array | None]]:
    """The header and arrays of one frame's body (without its leading length)."""
    (head_len,) = LENGTH.unpack_from(body)
    header = orjson.loads(body[LENGTH.size : LENGTH.size + head_len])
    offset = LENGTH.size + head_len
    arrays: list[Array | None] = []
    for spec in header.pop("arrays"):
        if spec is None:
            arrays.append(None)
            continue
        end = offset + int(spec["nbytes"])
        arrays.append(_array(spec, body[offset:end]))
        offset = end
    return header, arrays
