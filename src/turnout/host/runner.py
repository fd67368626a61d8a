"""A runner: one process holding many models, answering predictions over a unix socket.

Forked from the template with a listening socket already bound. The first connection is the
supervisor's (load, unload, stats, describe); gateway workers connect afterwards and send
predictions. Calls run one at a time; the in-flight slot says which, for the watchdog. The
runner ends when the supervisor's connection closes.
"""

from __future__ import annotations

import contextlib
import gc
import os
import resource
import selectors
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from turnout.host import wire
from turnout.host.hiding import hide
from turnout.host.slot import Slot
from turnout.registry.describe import Inspection, describe, resident_bytes
from turnout.registry.loader import load_files
from turnout.registry.servable import Servable
from turnout.types import JSON, Array

Reply = tuple[dict[str, JSON], list[Array | None]]
EXIT_OUT_OF_MEMORY = 70


@dataclass(frozen=True, kw_only=True)
class RunnerConfig:
    runner_id: int
    slot: Path
    allow_pickle: bool
    memory_growth_mb: int
    """How far the process may grow past what its models take (0: no limit)."""
    tmp: Path | None = None
    """A temporary folder the runner's user owns (TMPDIR for model code)."""
    uid: int | None = None
    """The unprivileged user the runner becomes (when the server runs as root)."""
    hide: tuple[Path, ...] = ()
    """Folders of the server's state hidden from the runner when it has to stay root."""
    gid: int | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunnerConfig:
        return cls(
            runner_id=int(data["runner_id"]),
            slot=Path(data["slot"]),
            allow_pickle=bool(data["allow_pickle"]),
            memory_growth_mb=int(data["memory_growth_mb"]),
            tmp=Path(data["tmp"]) if data.get("tmp") else None,
            uid=data.get("uid"),
            hide=tuple(Path(p) for p in data.get("hide", [])),
            gid=data.get("gid"),
        )


@dataclass
class Held:
    servable: Servable
    memory_bytes: int | None
    hits: int = 0
    last_used: float = field(default_factory=time.monotonic)


class Runner:
    def __init__(self, config: RunnerConfig) -> None:
        self.config = config
        self.slot = Slot(config.slot)
        self.models: dict[str, Held] = {}
        self._described: set[str] = set()
        """Flavors this process has checked a model of (their libraries are loaded)."""
        self._control: socket.socket | None = None
        self._ops: dict[str, Callable[[dict[str, Any], list[Array | None]], Reply]] = {
            "predict": self._predict,
            "load": self._load,
            "unload": self._unload,
            "stats": self._stats,
            "describe": self._describe,
        }

    # -- the loop ------------------------------------------------------------------------

    def serve(self, listener: socket.socket) -> None:
        selector = selectors.DefaultSelector()
        listener.setblocking(False)
        selector.register(listener, selectors.EVENT_READ)
        buffers: dict[socket.socket, bytearray] = {}
        while True:
            for event, _ in selector.select():
                sock = event.fileobj
                assert isinstance(sock, socket.socket)
                if sock is listener:
                    with contextlib.suppress(BlockingIOError):
                        conn, _ = listener.accept()
                        conn.setblocking(True)
                        if self._control is None:
                            self._control = conn
                        buffers[conn] = bytearray()
                        selector.register(conn, selectors.EVENT_READ)
                    continue
                if not self._receive(sock, buffers[sock]):
                    if sock is self._control:
                        return  # the supervisor is gone: so is this runner
                    selector.unregister(sock)
                    del buffers[sock]
                    sock.close()

    def _receive(self, sock: socket.socket, buffer: bytearray) -> bool:
        try:
            chunk = sock.recv(1 << 20)
        except ConnectionError:
            return False
        if not chunk:
            return False
        buffer += chunk
        try:
            for body in wire.split_frames(buffer):
                header, arrays = wire.decode(body)
                reply, out = self._handle(header, arrays)
                sock.sendall(wire.encode(reply, out))
        except (ValueError, ConnectionError, OSError):
            return False  # a malformed stream or a peer gone: drop this connection
        return True

    def _handle(self, header: dict[str, Any], arrays: list[Array | None]) -> Reply:
        op = self._ops.get(str(header.get("op")))
        request_id = header.get("id")
        if op is None:
            return {"id": request_id, "ok": False, "error": f"unknown op {header.get('op')!r}"}, []
        try:
            reply, out = op(header, arrays)
        except MemoryError as exc:
            self.slot.idle()
            if op == self._predict:  # a call that leaks: start over clean
                return self._out_of_memory(request_id)
            reply, out = {"ok": False, "error": f"MemoryError: {exc}"}, []  # model not kept
        except Exception as exc:  # the model's own failure, reported per call
            self.slot.idle()
            reply, out = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}, []
        return {"id": request_id, **reply}, out

    @staticmethod
    def _out_of_memory(request_id: object) -> Reply:
        """Start over clean rather than limp on: the supervisor reloads the models elsewhere."""
        os.write(2, b"runner: out of memory; exiting\n")
        os._exit(EXIT_OUT_OF_MEMORY)

    # -- operations ----------------------------------------------------------------------

    def _predict(self, header: dict[str, Any], arrays: list[Array | None]) -> Reply:
        key = str(header["key"])
        held = self.models.get(key)
        if held is None:
            return {"ok": False, "missing": True, "error": f"{key} is not loaded here"}, []
        (rows,) = arrays
        assert rows is not None
        self.slot.busy(key)
        prediction = held.servable.predict(rows)
        self.slot.idle()
        held.hits += 1
        held.last_used = time.monotonic()
        return {"ok": True}, [prediction.values, prediction.probabilities]

    def _load(self, header: dict[str, Any], arrays: list[Array | None]) -> Reply:
        key = str(header["key"])
        if key in self.models:
            return {"ok": True, "memory_bytes": self.models[key].memory_bytes, "load_ms": 0.0}, []
        record = wire.version_from_dict(header["record"])
        started = time.perf_counter()
        before = resident_bytes()
        self.slot.busy(f"load:{key}")
        servable = load_files(record, Path(header["path"]), allow_pickle=self.config.allow_pickle)
        servable.warm()
        self.slot.idle()
        after = resident_bytes()
        memory = max(after - before, 0) if before is not None and after is not None else None
        self.models[key] = Held(servable, memory)
        self._allow_growth()
        load_ms = (time.perf_counter() - started) * 1000
        return {"ok": True, "memory_bytes": memory, "load_ms": load_ms}, []

    def _unload(self, header: dict[str, Any], arrays: list[Array | None]) -> Reply:
        for key in header.get("keys", []):
            self.models.pop(str(key), None)
        gc.collect()
        return {"ok": True}, []

    def _stats(self, header: dict[str, Any], arrays: list[Array | None]) -> Reply:
        models = {key: [held.hits, held.last_used] for key, held in self.models.items()}
        return {"ok": True, "models": models, "resident_bytes": resident_bytes()}, []

    def _describe(self, header: dict[str, Any], arrays: list[Array | None]) -> Reply:
        inspection = Inspection.from_dict(header["inspection"])
        self.slot.busy(f"load:{inspection.source.name}")
        description = describe(inspection, warm=inspection.flavor in self._described)
        self._described.add(inspection.flavor)
        self.slot.idle()
        return {"ok": True, "description": description.to_dict()}, []

    def _allow_growth(self) -> None:
        """Cap the address space at what is mapped now plus the configured growth, so a
        leaking model fails its own call instead of taking the machine's memory."""
        growth = self.config.memory_growth_mb
        if growth <= 0:
            return
        with open("/proc/self/statm") as statm:
            mapped = int(statm.read().split()[0]) * resource.getpagesize()
        limit = mapped + growth * 1024 * 1024
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_AS, (limit, resource.RLIM_INFINITY))


def run(listener: socket.socket, config: RunnerConfig) -> None:
    """The forked child's whole life: open its slot, become the unprivileged user when asked
    (it then cannot read the server's home, its database or its tokens), serve."""
    runner = Runner(config)
    if config.tmp is not None:
        os.environ["TMPDIR"] = str(config.tmp)
        tempfile.tempdir = None
    if config.uid is not None:
        drop_privileges(config.uid, config.gid if config.gid is not None else config.uid)
    elif config.hide and os.geteuid() == 0:
        try:
            hide(config.hide)
        except OSError as exc:  # a machine that forbids mount namespaces: say so, go on
            os.write(2, f"runner {config.runner_id}: server state not hidden: {exc}\n".encode())
    gc.collect()
    runner._allow_growth()
    runner.serve(listener)


def drop_privileges(uid: int, gid: int) -> None:
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    if os.getuid() != uid or os.geteuid() != uid:
        raise PermissionError(f"could not become uid {uid}")
