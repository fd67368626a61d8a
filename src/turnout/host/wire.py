"""Messages between gateway workers, the model host and its runners: length-prefixed
frames of a JSON header and raw array bytes. No pickle: numbers travel as bytes, anything
else as JSON."""

from __future__ import annotations

import asyncio
import socket
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson

from turnout import framing
from turnout.store.records import Artifact, VersionRecord
from turnout.types import JSON, Array

LENGTH = framing.LENGTH
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


def read_frame(sock: socket.socket) -> bytes | None:
    """One frame's body from a blocking socket; None when the peer closed it."""
    return framing.read_frame(sock.recv, limit=MAX_FRAME)


async def read_async(reader: asyncio.StreamReader) -> tuple[dict[str, Any], list[Array | None]]:
    """One decoded frame from a stream; raises IncompleteReadError when it closes."""
    head = await reader.readexactly(LENGTH.size)
    (size,) = LENGTH.unpack(head)
    if size > MAX_FRAME:
        raise ValueError(f"frame of {size} bytes is over the limit")
    return decode(await reader.readexactly(size))


def split_frames(buffer: bytearray) -> list[bytes]:
    """Take every complete frame body off the front of `buffer` (the rest stays)."""
    bodies = []
    offset = 0
    while len(buffer) - offset >= LENGTH.size:
        (size,) = LENGTH.unpack_from(buffer, offset)
        if size > MAX_FRAME:
            raise ValueError(f"frame of {size} bytes is over the limit")
        end = offset + LENGTH.size + size
        if len(buffer) < end:
            break
        bodies.append(bytes(buffer[offset + LENGTH.size : end]))
        offset = end
    del buffer[:offset]
    return bodies


def version_to_dict(record: VersionRecord) -> dict[str, JSON]:
    """What a runner needs to load a version (no credentials, nothing else of the DB)."""
    return {
        "model": record.model,
        "version": record.version,
        "flavor": record.flavor,
        "artifact": record.artifact.to_dict(),
        "signature": record.signature,
        "memory_bytes": record.memory_bytes,
    }


def version_from_dict(data: dict[str, Any]) -> VersionRecord:
    memory = data.get("memory_bytes")
    return VersionRecord(
        id=0,
        model=str(data["model"]),
        version=int(data["version"]),
        flavor=str(data["flavor"]),
        description="",
        artifact=Artifact.from_dict(data["artifact"]),
        signature=dict(data["signature"]),
        metrics={},
        params={},
        tags={},
        training=None,
        parent_version=None,
        lineage={},
        created_by="",
        created_at=datetime.fromtimestamp(0, UTC),
        memory_bytes=int(memory) if memory is not None else None,
    )
