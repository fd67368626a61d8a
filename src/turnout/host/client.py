"""The gateway's side of the model host: start it, ask it where models are, call runners.

`HostRunner` is the gateway's `Runner` when models run in the host: it asks the supervisor
to place a version (loading it on demand), then sends predictions straight to the runner
that holds it, batching concurrent requests, one batch in flight per replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from turnout import tracing
from turnout.errors import (
    BadRequest,
    InvalidArtifact,
    ModelUnavailable,
    PolicyRefused,
    RunnerRestarting,
    TurnoutError,
)
from turnout.gateway.batcher import Batcher
from turnout.gateway.runner import checked
from turnout.host import wire
from turnout.registry.describe import Description, Inspection
from turnout.registry.flavors import Prediction
from turnout.registry.servable import Servable
from turnout.store.records import VersionRecord
from turnout.types import Array

log = logging.getLogger("turnout.host")

START_TIMEOUT_S = 60.0
PLACE_TIMEOUT_S = 180.0
SCALE_EVERY_S = 1.0
WATCH_INTERVAL_S = 0.2
RESTART_BACKOFF_S = (0.0, 0.5, 1.0, 2.0, 5.0)


def _error(reply: dict[str, Any]) -> TurnoutError:
    message = str(reply.get("error"))
    if reply.get("restarting"):
        return RunnerRestarting(message)
    status = int(reply.get("status", 503))
    if status == 403:
        return PolicyRefused(message)
    if status == 400:
        return BadRequest(message)
    if status == 422:
        return InvalidArtifact(message)
    return ModelUnavailable(message)


# -- the host process -------------------------------------------------------------------------


class HostProcess:
    """The supervisor as a child of the server, with a private folder for its sockets.

    A supervisor that dies is started again (its runners end with it): workers reconnect
    and models load again on demand, answered for meanwhile by failover and fallback.
    """

    def __init__(
        self,
        run_dir: Path,
        process: subprocess.Popen[bytes] | None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.run_dir = run_dir
        self.process = process
        """None when this process only uses a host that another one started."""
        self._env = env
        self._stopping = threading.Event()
        self.restarts = 0

    @classmethod
    def attach(cls, socket_path: Path) -> HostProcess:
        return cls(socket_path.parent, None)

    @property
    def socket(self) -> Path:
        return self.run_dir / "host.sock"

    @classmethod
    def start(cls, env: dict[str, str] | None = None) -> HostProcess:
        run_dir = Path(tempfile.mkdtemp(prefix="turnout-host-"))
        # Others may pass through (runners that dropped to an unprivileged user reach their
        # staged files below) but not list it; its sockets are the server user's alone.
        run_dir.chmod(0o711)
        host = cls(run_dir, None, env)
        try:
            host._launch()
        except ModelUnavailable:
            host.stop()
            raise
        threading.Thread(target=host._watch, name="model-host-watch", daemon=True).start()
        return host

    def _launch(self) -> None:
        process = subprocess.Popen(
            [sys.executable, "-m", "turnout.host.supervisor", str(self.socket), str(os.getpid())],
            env=self._env,
            # the server decides when its host ends (it stops it, or the host sees it gone): a
            # signal to the server's process group (Ctrl-C, systemd's or a shell's SIGTERM)
            # must not take the models away while the server drains its requests
            start_new_session=True,
        )
        self.process = process
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise ModelUnavailable(f"the model host exited with code {process.returncode}")
            with contextlib.suppress(OSError, TurnoutError):
                SyncHost(self.socket).call({"op": "ping"}, timeout_s=1.0)
                return
            time.sleep(0.05)
        process.kill()
        raise ModelUnavailable("the model host did not start")

    def _watch(self) -> None:
        failures = 0
        while not self._stopping.wait(WATCH_INTERVAL_S):
            process = self.process
            if process is None or process.poll() is None:
                continue
            log.error("the model host exited (code %s); starting a new one", process.returncode)
            self._stopping.wait(RESTART_BACKOFF_S[min(failures, len(RESTART_BACKOFF_S) - 1)])
            if self._stopping.is_set():
                return
            try:
                self._launch()
            except ModelUnavailable:
                failures += 1
                log.exception("the model host did not start again")
                continue
            failures = 0
            self.restarts += 1

    def stop(self) -> None:
        self._stopping.set()
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.run_dir, ignore_errors=True)


# -- blocking calls (API threads) -------------------------------------------------------------


class SyncHost:
    """One blocking request per connection: for API threads (registration checks, warm-up,
    status), never on the request path."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def call(self, header: dict[str, Any], *, timeout_s: float) -> dict[str, Any]:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout_s)
            try:
                sock.connect(str(self.path))
                sock.sendall(wire.encode({"id": 1, **header}, []))
                body = wire.read_frame(sock)
            except TimeoutError:
                raise ModelUnavailable(
                    f"the model host did not answer within {timeout_s:g} s"
                ) from None
            except OSError as exc:
                raise ModelUnavailable(f"the model host cannot be reached: {exc}") from exc
        if body is None:
            raise ModelUnavailable("the model host closed the connection")
        reply, _ = wire.decode(body)
        if not reply.get("ok"):
            raise _error(reply)
        return reply

    def place(self, record: VersionRecord) -> None:
        header = {"op": "place", "key": record.ref, "record": wire.version_to_dict(record)}
        self.call(header, timeout_s=PLACE_TIMEOUT_S)

    def status(self) -> dict[str, Any]:
        return self.call({"op": "status"}, timeout_s=10.0)

    def changed(self) -> None:
        """Have every worker of this node look at the routing now."""
        self.call({"op": "changed"}, timeout_s=2.0)


class HostInspector:
    """Registration checks in a fresh runner of the host (see `registry.describe`)."""

    def __init__(self, host: SyncHost, *, timeout_s: float) -> None:
        self.host = host
        self.timeout_s = timeout_s

    def describe(self, inspection: Inspection) -> Description:
        reply = self.host.call(
            {"op": "describe", "inspection": inspection.to_dict()}, timeout_s=self.timeout_s + 30
        )
        return Description.from_dict(reply["description"])


# -- asynchronous calls (gateway workers) -----------------------------------------------------


class Link:
    """One connection to the supervisor or to a runner; requests carry ids, replies may come
    in any order."""

    def __init__(self, path: str, *, on_event: Callable[[dict[str, Any]], None] | None = None):
        self.path = path
        self.on_event = on_event
        """Told of messages nobody asked for (the host's routing-change events)."""
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[tuple[dict[str, Any], list[Array | None]]]] = {}
        self._ids = itertools.count(1)
        self._connecting: asyncio.Lock | None = None
        self.closed = False
        self.in_flight = 0

    async def _connect(self) -> asyncio.StreamWriter:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._writer is None:
                try:
                    reader, writer = await asyncio.open_unix_connection(self.path)
                except OSError as exc:
                    self.closed = True
                    raise RunnerRestarting(f"cannot reach {self.path}: {exc}") from exc
                self._writer = writer
                self._reader_task = asyncio.get_running_loop().create_task(self._read(reader))
            return self._writer

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                header, arrays = await wire.read_async(reader)
                if "event" in header:
                    if self.on_event is not None:
                        self.on_event(header)
                    continue
                future = self._pending.pop(int(header.get("id") or 0), None)
                if future is not None and not future.done():
                    future.set_result((header, arrays))
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        self.closed = True
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ModelUnavailable("its runner process ended"))
        self._pending.clear()

    async def request(
        self, header: dict[str, Any], arrays: list[Array | None] | None = None
    ) -> tuple[dict[str, Any], list[Array | None]]:
        if self.closed:
            raise RunnerRestarting("its runner process ended")
        writer = await self._connect()
        request_id = next(self._ids)
        future: asyncio.Future[tuple[dict[str, Any], list[Array | None]]]
        future = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        self.in_flight += 1
        try:
            writer.write(wire.encode({**header, "id": request_id}, arrays or []))
            return await future
        finally:
            self.in_flight -= 1
            self._pending.pop(request_id, None)

    def close(self) -> None:
        self.closed = True
        if self._writer is not None:
            self._writer.close()
        if self._reader_task is not None:
            self._reader_task.cancel()


@dataclass
class Placement:
    runners: list[int] = field(default_factory=list)
    scaled_at: float = 0.0


class HostRunner:
    """Runs versions in the node's model host (see the module docstring)."""

    def __init__(self, socket_path: Path, *, max_batch_rows: int = 64) -> None:
        self.host = Link(str(socket_path))
        self.max_batch_rows = max_batch_rows
        self._links: dict[int, Link] = {}
        self._sockets: dict[int, str] = {}
        self._placements: dict[str, Placement] = {}
        self._placing: dict[str, asyncio.Future[Placement]] = {}
        self._batchers: dict[str, Batcher] = {}
        self._on_change: Callable[[], None] | None = None

    async def watch(self, on_change: Callable[[], None]) -> None:
        """Hear of routing changes from the host as soon as an API process writes one."""
        self._on_change = on_change
        self.host.on_event = lambda _: on_change()
        with contextlib.suppress(TurnoutError):
            await self._ask({"op": "watch"})

    async def changed(self) -> None:
        with contextlib.suppress(TurnoutError):
            await self._ask({"op": "changed"})

    async def _ask(self, header: dict[str, Any]) -> dict[str, Any]:
        if self.host.closed:
            self.host = Link(self.host.path)
            if self._on_change is not None and header.get("op") != "watch":
                await self.watch(self._on_change)
        reply, _ = await self.host.request(header)
        if not reply.get("ok"):
            raise _error(reply)
        return reply

    def _learn(self, key: str, reply: dict[str, Any]) -> Placement:
        placement = self._placements.setdefault(key, Placement())
        placement.runners = [int(r["id"]) for r in reply["runners"]]
        for runner in reply["runners"]:
            self._sockets[int(runner["id"])] = str(runner["socket"])
        return placement

    async def place(self, servable: Servable) -> Placement:
        key = servable.record.ref
        placement = self._placements.get(key)
        if placement is not None and placement.runners:
            return placement
        pending = self._placing.get(key)
        if pending is None:
            header = {
                "op": "place",
                "key": key,
                "record": wire.version_to_dict(servable.record),
            }

            async def ask() -> Placement:
                return self._learn(key, await self._ask(header))

            pending = self._placing[key] = asyncio.ensure_future(ask())
            pending.add_done_callback(lambda _: self._placing.pop(key, None))
        return await asyncio.shield(pending)

    async def warm(self, servable: Servable) -> None:
        await self.place(servable)

    def _link(self, runner_id: int) -> Link:
        link = self._links.get(runner_id)
        if link is None or link.closed:
            link = self._links[runner_id] = Link(self._sockets[runner_id])
        return link

    def _forget(self, key: str, runner_id: int) -> None:
        placement = self._placements.get(key)
        if placement is not None and runner_id in placement.runners:
            placement.runners.remove(runner_id)

    async def _call(self, servable: Servable, rows: Array) -> Prediction:
        tracer = tracing.TRACER
        if tracer is None:
            return await self._send(servable, rows)
        attributes: tracing.Attributes = {
            "turnout.model": servable.record.ref,
            "turnout.rows": len(rows),
        }
        with tracing.child_span(tracer, "runner call", attributes):  # maybe a batch
            return await self._send(servable, rows)

    async def _send(self, servable: Servable, rows: Array) -> Prediction:
        key = servable.record.ref
        for _ in range(3):  # an evicted or moved model is placed again, once or twice
            placement = await self.place(servable)
            runner_id = min(placement.runners, key=lambda r: self._link(r).in_flight)
            link = self._link(runner_id)
            try:
                reply, arrays = await link.request({"op": "predict", "key": key}, [rows])
            except RunnerRestarting:
                self._forget(key, runner_id)
                continue  # the runner was already gone: place again
            except ModelUnavailable as exc:
                self._forget(key, runner_id)
                raise ModelUnavailable(f"runner for {key} died: {exc.message}") from None
            if reply.get("missing"):
                self._forget(key, runner_id)
                continue
            if not reply.get("ok"):
                raise ModelUnavailable(f"model {key} failed: {reply.get('error')}")
            values, probabilities = arrays
            assert values is not None
            return Prediction(values, probabilities)
        raise RunnerRestarting(f"{key} keeps moving between runners")

    def _batcher(self, servable: Servable) -> Batcher:
        key = servable.record.ref
        batcher = self._batchers.get(key)
        if batcher is None:

            async def call(rows: Array) -> Prediction:
                return await self._call(servable, rows)

            def parallel() -> int:
                placement = self._placements.get(key)
                return max(1, len(placement.runners)) if placement else 1

            batcher = Batcher(
                call, max_rows=self.max_batch_rows, parallel=parallel, on_backlog=self._scale(key)
            )
            self._batchers[key] = batcher
        return batcher

    def _scale(self, key: str) -> Any:
        def backlog() -> None:
            placement = self._placements.get(key)
            now = time.monotonic()
            if placement is None or now - placement.scaled_at < SCALE_EVERY_S:
                return
            placement.scaled_at = now
            asyncio.get_running_loop().create_task(self._scale_up(key))

        return backlog

    async def _scale_up(self, key: str) -> None:
        with contextlib.suppress(TurnoutError):
            self._learn(key, await self._ask({"op": "scale", "key": key}))

    async def predict(self, servable: Servable, rows: Array) -> Prediction:
        return checked(await self._batcher(servable).predict(rows), servable, len(rows))

    async def routed(self, servables: list[Servable], settings: dict[str, Any]) -> None:
        """Tell the host what the routing table needs: which versions are routed, pinned,
        isolated, with how many replicas at most, and which flavors to import ahead."""
        header = {
            "op": "routed",
            "keys": [s.record.ref for s in servables],
            "flavors": sorted({s.record.flavor for s in servables}),
            "records": {
                s.record.ref: wire.version_to_dict(s.record)
                for s in servables
                if s.record.ref in settings.get("pinned", ())
            },
            **settings,
        }
        with contextlib.suppress(TurnoutError):
            await self._ask(header)

    async def keep_only(self, keys: set[tuple[str, int]]) -> None:
        """Forget batchers and placements of versions no revision routes here any more (the
        host unloads them when it needs the room)."""
        wanted = {f"{model}:{version}" for model, version in keys}
        for key in list(self._batchers):
            if key not in wanted:
                del self._batchers[key]
                self._placements.pop(key, None)

    async def status(self) -> dict[str, Any]:
        return await self._ask({"op": "status"})

    async def close(self) -> None:
        for link in self._links.values():
            link.close()
        self.host.close()
