"""Length-prefixed frames: a 4-byte big-endian length, then that many bytes. How the
gateway, the model host and its runners, and a worker and its log writer talk."""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import IO

LENGTH = struct.Struct(">I")


def read_exactly(read: Callable[[int], bytes], size: int) -> bytes | None:
    """`size` bytes from `read` (a socket's `recv` or a pipe's `read`, which may return fewer
    than asked); None when the other end closed before they all came."""
    chunks = bytearray()
    while len(chunks) < size:
        chunk = read(min(size - len(chunks), 1 << 20))
        if not chunk:
            return None
        chunks += chunk
    return bytes(chunks)


def read_frame(read: Callable[[int], bytes], *, limit: int) -> bytes | None:
    """One frame's body; None when the other end closed. A length over `limit` is refused."""
    head = read_exactly(read, LENGTH.size)
    if head is None:
        return None
    (size,) = LENGTH.unpack(head)
    if size > limit:
        raise ValueError(f"frame of {size} bytes is over the limit")
    return read_exactly(read, size)


def write_frames(out: IO[bytes], *bodies: bytes) -> None:
    """Each body as one frame, then flush."""
    for body in bodies:
        out.write(LENGTH.pack(len(body)))
        out.write(body)
    out.flush()
