"""Each worker reports what it serves: the revision per deployment (the acknowledgement a
promote waits for), its traffic counters and any version it failed to load."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from turnout.gateway.table import RoutingTable
from turnout.monitoring.stats import TrafficStats

log = logging.getLogger("turnout.gateway")

Report = Callable[..., None]


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Heartbeat:
    def __init__(
        self,
        table: RoutingTable,
        stats: TrafficStats,
        *,
        report: Report,
        forget: Callable[[str], None],
        breakers: Callable[[], list[dict[str, Any]]] = list,
        logging: Callable[[], dict[str, Any]] = dict,
        interval_s: float = 1.0,
        worker_id: str | None = None,
    ) -> None:
        self.table = table
        self.stats = stats
        self._report = report
        self._forget = forget
        self._breakers = breakers
        self._logging = logging
        self.interval_s = interval_s
        self.worker_id = worker_id or new_worker_id()
        self.started_at = datetime.now(UTC)
        self._task: asyncio.Task[None] | None = None
        self._reported: tuple[int, float] | None = None
        """The counters' movement at the last beat: unchanged counters are not rewritten."""

    def payload(self) -> dict[str, Any]:
        return {
            "worker_id": self.worker_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started_at": self.started_at,
            "revisions": dict(self.table.served),
            "stats": self.stats.snapshot(),
            "errors": dict(self.table.errors),
            "breakers": self._breakers(),
            "logging": self._logging(),
        }

    async def beat(self) -> None:
        payload = self.payload()
        moved = self.stats.moved()
        if moved == self._reported:  # no traffic since: the stored counters still hold
            payload["stats"] = None
        await asyncio.to_thread(self._report, **payload)
        self._reported = moved

    async def run(self) -> None:
        while True:
            try:
                await self.beat()
            except asyncio.CancelledError:
                raise
            except Exception:  # the DB may be briefly unavailable; keep serving
                log.warning("heartbeat failed", exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.table.changed.wait(), self.interval_s)
            self.table.changed.clear()

    def start(self) -> None:
        self._task = asyncio.create_task(self.run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self._forget, self.worker_id)
