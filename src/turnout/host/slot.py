"""A runner's in-flight slot: a tiny shared file saying which model it is running, since when.

The runner writes it before each call and clears it after; the supervisor reads it to find
a hung call (watchdog) and, when a runner dies, the model whose call killed it.
"""

from __future__ import annotations

import mmap
import os
import struct
import time
from dataclasses import dataclass
from pathlib import Path

SIZE = 256
HEAD = struct.Struct("<dH")
"""Start time (CLOCK_MONOTONIC seconds, 0 when idle) and the key's length."""
MAX_KEY = SIZE - HEAD.size


@dataclass(frozen=True, slots=True)
class Busy:
    key: str
    """`model:version`, prefixed `load:` while loading."""
    since: float


class Slot:
    def __init__(self, path: Path, *, create: bool = False) -> None:
        flags = os.O_RDWR | (os.O_CREAT if create else 0)
        fd = os.open(path, flags, 0o600)
        try:
            if create:
                os.ftruncate(fd, SIZE)
            self._map = mmap.mmap(fd, SIZE)
        finally:
            os.close(fd)

    def busy(self, key: str) -> None:
        data = key.encode()[:MAX_KEY]
        self._map[HEAD.size : HEAD.size + len(data)] = data
        self._map[: HEAD.size] = HEAD.pack(time.monotonic(), len(data))

    def idle(self) -> None:
        self._map[: HEAD.size] = HEAD.pack(0.0, 0)

    def read(self) -> Busy | None:
        since, length = HEAD.unpack(self._map[: HEAD.size])
        if not since:
            return None
        return Busy(self._map[HEAD.size : HEAD.size + length].decode(errors="replace"), since)

    def close(self) -> None:
        self._map.close()
