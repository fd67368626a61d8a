"""Isolated runners: each version runs in its own supervised process.

A crashed process is replaced in the background with backoff; a call that runs past the
hang limit gets the process killed and replaced. Callers never wait on a dead or hung
process past their own deadline: the gateway's deadline and failover chain sit above this.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
from collections.abc import Mapping

from turnout.errors import ModelUnavailable
from turnout.gateway import wire
from turnout.gateway.batcher import Batcher
from turnout.gateway.runner import checked
from turnout.registry.flavors import Prediction
from turnout.registry.servable import Servable
from turnout.types import Array

log = logging.getLogger("turnout.gateway")

START_TIMEOUT_S = 120.0
LOW_PRIORITY = 19
BACKOFF_S = (0.05, 0.2, 0.5, 1.0, 2.0, 5.0)


class RunnerRestarting(ModelUnavailable):
    """The version's process died and its replacement is not up yet: skip, not a failure."""


class RunnerProcess:
    """One child process serving one version, restarted whenever it dies or hangs."""

    def __init__(self, model: str, version: int, *, env: Mapping[str, str], hang_s: float) -> None:
        self.nice = 0
        self.model = model
        self.version = version
        self._env = dict(env)
        self._hang_s = hang_s
        self._process: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()
        self._next_id = 0
        self._failures = 0
        self._not_before = 0.0
        self._replacing: asyncio.Task[None] | None = None
        self._stopped = False
        self.restarts = 0
        self.last_error: str | None = None

    def set_low_priority(self, low: bool) -> None:
        """Shadow-only versions run at the lowest CPU priority, so on a busy machine their
        work waits for the champion's rather than competing with it."""
        self.nice = LOW_PRIORITY if low else 0
        if self._process is not None and self._process.returncode is None:
            self._renice(self._process.pid)

    def _renice(self, pid: int) -> None:
        with contextlib.suppress(OSError):  # raising priority back may need privileges
            os.setpriority(os.PRIO_PROCESS, pid, self.nice)

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.returncode is None

    async def _start(self) -> asyncio.subprocess.Process:
        wait = self._not_before - time.monotonic()
        if wait > 0:
            raise RunnerRestarting(
                f"runner for {self.model}:{self.version} is restarting ({self.last_error})"
            )
        started = time.monotonic()
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "turnout.gateway.runner_process", self.model, str(self.version),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=self._env,
        )  # fmt: skip
        self._renice(process.pid)
        try:
            header, _ = await asyncio.wait_for(self._receive(process), START_TIMEOUT_S)
        except (TimeoutError, ModelUnavailable) as exc:
            self._kill(process)
            self._backoff(f"did not start: {exc}")
            raise ModelUnavailable(f"runner for {self.model}:{self.version} did not start") from exc
        except asyncio.CancelledError:  # stopped while starting: leave no process behind
            self._kill(process)
            raise
        if not header.get("ready"):
            self._kill(process)
            self._backoff(str(header.get("error")))
            raise ModelUnavailable(
                f"runner for {self.model}:{self.version} failed to load: {header.get('error')}"
            )
        log.info(
            "runner %s:%s up in %.2fs (pid %s)", self.model, self.version,
            time.monotonic() - started, process.pid,
        )  # fmt: skip
        self._process = process
        return process

    def _backoff(self, reason: str) -> None:
        self.last_error = reason
        delay = BACKOFF_S[min(self._failures, len(BACKOFF_S) - 1)]
        self._failures += 1
        self._not_before = time.monotonic() + delay

    def _lost(self, reason: str) -> None:
        """Count a lost process and replace it in the background once the backoff has
        passed: otherwise the next call (often a breaker probe) waits out the start, which
        takes far longer than a deadline, and fails."""
        self.restarts += 1
        self._backoff(reason)
        if not self._stopped and (self._replacing is None or self._replacing.done()):
            self._replacing = asyncio.get_running_loop().create_task(self._replace())

    async def _replace(self) -> None:
        while True:
            await asyncio.sleep(max(0.0, self._not_before - time.monotonic()))
            async with self._lock:
                if self._stopped or self.alive:
                    return
                try:
                    await self._start()
                except ModelUnavailable:
                    continue  # backed off again; try once that has passed
                return

    @staticmethod
    async def _receive(
        process: asyncio.subprocess.Process,
    ) -> tuple[dict[str, object], list[Array | None]]:
        assert process.stdout is not None
        try:
            head = await process.stdout.readexactly(wire.LENGTH.size)
            (size,) = wire.LENGTH.unpack(head)
            body = await process.stdout.readexactly(size)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            raise ModelUnavailable("runner process exited") from exc
        return wire.decode(body)

    @staticmethod
    def _kill(process: asyncio.subprocess.Process) -> None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()

    async def start(self) -> None:
        """Start the process now (blue-green: load and warm before any traffic)."""
        async with self._lock:
            if not self.alive:
                await self._start()

    async def call(self, rows: Array) -> Prediction:
        async with self._lock:
            process = self._process if self.alive else await self._start()
            assert process is not None
            assert process.stdin is not None
            self._next_id += 1
            try:
                process.stdin.write(wire.encode({"id": self._next_id}, [rows]))
                await process.stdin.drain()
                header, arrays = await asyncio.wait_for(self._receive(process), self._hang_s)
            except TimeoutError:
                self._kill(process)
                await process.wait()
                self._lost(f"hung for over {self._hang_s:g}s")
                raise ModelUnavailable(
                    f"runner for {self.model}:{self.version} hung; it is being replaced"
                ) from None
            except (ModelUnavailable, ConnectionError) as exc:
                self._kill(process)
                await process.wait()
                self._lost(f"exited with code {process.returncode}")
                raise ModelUnavailable(
                    f"runner for {self.model}:{self.version} died (exit code "
                    f"{process.returncode}); it is being replaced"
                ) from exc
            if header.get("exiting"):  # it answered, then ends itself (out of memory)
                self._kill(process)
                await process.wait()
                self._lost(str(header.get("error")))
        if not header.get("ok"):
            raise ModelUnavailable(
                f"model {self.model}:{self.version} failed: {header.get('error')}"
            )
        self._failures = 0
        values, probabilities = arrays
        assert values is not None
        return Prediction(values, probabilities)

    async def stop(self) -> None:
        self._stopped = True
        if self._replacing is not None:
            self._replacing.cancel()
        process = self._process
        if process is not None and process.returncode is None:
            assert process.stdin is not None
            process.stdin.close()
            try:
                await asyncio.wait_for(process.wait(), 5)
            except TimeoutError:
                self._kill(process)
                await process.wait()


class ProcessRunner:
    """Runs every version in its own process, batching concurrent requests per version."""

    def __init__(self, *, env: Mapping[str, str], hang_ms: int, max_batch_rows: int = 64) -> None:
        self._env = env
        self._hang_s = hang_ms / 1000
        self.max_batch_rows = max_batch_rows
        self._processes: dict[tuple[str, int], RunnerProcess] = {}
        self._batchers: dict[tuple[str, int], Batcher] = {}
        self._reserved: dict[tuple[str, int], float] = {}
        self._shadow_only: set[tuple[str, int]] = set()

    def process(self, model: str, version: int) -> RunnerProcess:
        key = (model, version)
        runner = self._processes.get(key)
        if runner is None:
            runner = RunnerProcess(model, version, env=self._env, hang_s=self._hang_s)
            runner.nice = LOW_PRIORITY if key in self._shadow_only else 0
            self._processes[key] = runner
        return runner

    async def start(self, model: str, version: int, *, reserve_s: float = 0.0) -> None:
        """Start a version's process now (on the event loop: the table of processes is only
        ever touched there). `reserve_s` keeps it from being stopped as unneeded for that
        long: a change is about to route to it."""
        if reserve_s:
            self._reserved[(model, version)] = time.monotonic() + reserve_s
        await self.process(model, version).start()

    async def predict(self, servable: Servable, rows: Array) -> Prediction:
        key = (servable.record.model, servable.version)
        batcher = self._batchers.get(key)
        if batcher is None:
            batcher = Batcher(self.process(*key).call, max_rows=self.max_batch_rows)
            self._batchers[key] = batcher
        return checked(await batcher.predict(rows), servable, len(rows))

    def prioritize(self, shadow_only: set[tuple[str, int]]) -> None:
        self._shadow_only = shadow_only
        for key, process in self._processes.items():
            process.set_low_priority(key in shadow_only)

    async def keep_only(self, keys: set[tuple[str, int]]) -> None:
        now = time.monotonic()
        self._reserved = {k: until for k, until in self._reserved.items() if until > now}
        for key in list(self._processes):
            if key not in keys and key not in self._reserved:
                self._batchers.pop(key, None)
                await self._processes.pop(key).stop()

    async def close(self) -> None:
        await asyncio.gather(*(p.stop() for p in self._processes.values()))
        self._processes.clear()
