"""The supervisor's side of the fork server: starts it, asks it for runners, hears exits."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import sys
from collections.abc import Callable
from typing import Any

from turnout.errors import ModelUnavailable
from turnout.host import wire

log = logging.getLogger("turnout.host")

START_TIMEOUT_S = 120.0
FORK_TIMEOUT_S = 120.0
"""A fork may first import a flavor's library (seconds on a cold machine)."""
EXIT_CODES_KEPT = 1024


class Template:
    def __init__(self, env: dict[str, str], *, on_exit: Callable[[int, int], None]) -> None:
        self._env = env
        self._on_exit = on_exit
        self._process: asyncio.subprocess.Process | None = None
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._reader: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._exit_codes: dict[int, int] = {}
        self._exited = asyncio.Condition()

    async def start(self) -> None:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "turnout.host.template",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=self._env,
        )  # fmt: skip
        assert process.stdout is not None
        try:
            ready, _ = await asyncio.wait_for(wire.read_async(process.stdout), START_TIMEOUT_S)
        except (TimeoutError, asyncio.IncompleteReadError) as exc:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            raise ModelUnavailable("the runner template did not start") from exc
        self._process = process
        self._reader = asyncio.get_running_loop().create_task(self._read(process))
        log.info("runner template up (pid %s)", ready.get("pid"))

    async def _read(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        try:
            while True:
                message, _ = await wire.read_async(process.stdout)
                if "exited" in message:
                    await self._record_exit(int(message["exited"]), int(message["code"]))
                    continue
                future = self._pending.pop(int(message.get("id") or 0), None)
                if future is not None and not future.done():
                    future.set_result(message)
        except (asyncio.IncompleteReadError, ConnectionError):
            log.error("the runner template ended; starting a new one")
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(ModelUnavailable("the runner template ended"))
            self._pending.clear()
            self._process = None

    async def _record_exit(self, pid: int, code: int) -> None:
        self._exit_codes[pid] = code
        if len(self._exit_codes) > EXIT_CODES_KEPT:
            self._exit_codes.pop(next(iter(self._exit_codes)))
        async with self._exited:
            self._exited.notify_all()
        self._on_exit(pid, code)

    async def exit_code(self, pid: int, *, wait_s: float = 1.0) -> int | None:
        """A child's exit code, waiting briefly for the template to reap it."""
        async with self._exited:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._exited.wait_for(lambda: pid in self._exit_codes), wait_s
                )
        return self._exit_codes.get(pid)

    async def _request(self, header: dict[str, Any]) -> dict[str, Any]:
        async with self._lock:
            if self._process is None or self._process.returncode is not None:
                await self.start()
        process = self._process
        assert process is not None
        assert process.stdin is not None
        request_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        process.stdin.write(wire.encode({"id": request_id, **header}, []))
        await process.stdin.drain()
        reply = await asyncio.wait_for(future, FORK_TIMEOUT_S)
        if not reply.get("ok"):
            raise ModelUnavailable(f"could not start a runner: {reply.get('error')}")
        return reply

    async def fork(self, request: dict[str, Any]) -> int:
        reply = await self._request({"op": "fork", **request})
        return int(reply["pid"])

    async def prepare(self, flavors: list[str]) -> None:
        await self._request({"op": "prepare", "flavors": flavors})

    async def stop(self) -> None:
        process = self._process
        if process is None:
            return
        if process.stdin is not None:
            process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), 5)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
