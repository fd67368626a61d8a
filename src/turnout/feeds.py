"""Named adapters between the gateway's workers and the rest: the metadata DB as the routing
table and heartbeat read and write it, and the validate step's scoring where models run."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from turnout.gateway.pool import ModelPool, RecordCache
from turnout.gateway.runner import Runner
from turnout.registry.service import Registry
from turnout.registry.signature import Signature
from turnout.store import metadata as md
from turnout.store.db import Database

SCORE_TIMEOUT_S = 300.0
"""How long the validate step waits for a version's predictions on its holdout rows."""


@dataclass
class LoopHolder:
    """The worker's event loop once it runs, for API threads that must hand it work."""

    running: asyncio.AbstractEventLoop | None = None


class Versions:
    """What the gateway asks of the registry: a version's signature (cached, without
    loading the version) and a model's version numbers."""

    def __init__(self, registry: Registry, cache: RecordCache) -> None:
        self.registry = registry
        self.cache = cache

    async def signature(self, model: str, version: int) -> Signature:
        return Signature.from_dict((await self.cache.get(model, version)).signature)

    def numbers(self, model: str) -> list[int]:
        return [v.version for v in self.registry.list_versions(model)]


class RoutingFeed:
    """What the routing table reads: a fingerprint of every routing change, and the active
    revisions (those changed since a time, or all)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def fingerprint(self) -> Any:
        with self.db.read() as conn:
            return md.routing_fingerprint(conn)

    def snapshot(self, since: datetime | None = None) -> list[Any]:
        with self.db.read() as conn:
            return md.active_revisions(conn, since)


class WorkerRows:
    """The heartbeat's rows: each live worker's counters, breakers and acknowledgements."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def report(self, **payload: Any) -> None:
        with self.db.write() as conn:
            md.report_worker(conn, **payload)

    def forget(self, worker_id: str) -> None:
        with self.db.write() as conn:
            md.forget_worker(conn, worker_id)


class Scorer:
    """A version's predictions for the validate step, computed where models run; called
    from the controller's thread, it waits on the worker's loop at most `timeout_s`."""

    def __init__(
        self, pool: ModelPool, runner: Runner, loop: LoopHolder, timeout_s: float = SCORE_TIMEOUT_S
    ) -> None:
        self.pool = pool
        self.runner = runner
        self.loop = loop
        self.timeout_s = timeout_s

    def __call__(self, model: str, version: int, rows: Any) -> Any:
        if self.loop.running is None:
            raise RuntimeError("the worker's event loop is not running yet")
        future = asyncio.run_coroutine_threadsafe(
            self._score(model, version, rows), self.loop.running
        )
        return future.result(timeout=self.timeout_s)

    async def _score(self, model: str, version: int, rows: Any) -> Any:
        servable = await self.pool.get(model, version)
        return await self.runner.predict(servable, rows)
