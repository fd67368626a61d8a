"""Versions loaded in this worker, shared by every deployment that routes to them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from turnout.registry.servable import Servable
from turnout.store.records import VersionRecord

log = logging.getLogger("turnout.gateway")

Key = tuple[str, int]
Loader = Callable[[str, int], Awaitable[Servable]]


class ModelPool:
    """Loads each (model, version) once; concurrent askers share the load."""

    def __init__(self, loader: Loader) -> None:
        self._loader = loader
        self._loaded: dict[Key, Servable] = {}
        self._loading: dict[Key, asyncio.Future[Servable]] = {}

    def peek(self, model: str, version: int) -> Servable | None:
        return self._loaded.get((model, version))

    async def get(self, model: str, version: int) -> Servable:
        key = (model, version)
        servable = self._loaded.get(key)
        if servable is not None:
            return servable
        pending = self._loading.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._loader(model, version))
            self._loading[key] = pending
            pending.add_done_callback(lambda fut: self._settle(key, fut))
        return await asyncio.shield(pending)

    def _settle(self, key: Key, future: asyncio.Future[Servable]) -> None:
        self._loading.pop(key, None)
        if not future.cancelled() and future.exception() is None:
            self._loaded[key] = future.result()
            log.info("loaded %s:%s", *key)

    def keep_only(self, needed: set[Key]) -> None:
        """Unload what no active revision needs (callers drain first)."""
        for key in list(self._loaded):
            if key not in needed:
                del self._loaded[key]
                log.info("unloaded %s:%s", *key)

    def loaded(self) -> list[Key]:
        return sorted(self._loaded)


class RecordCache:
    """Version records read once from the DB (versions are immutable), off the event loop."""

    def __init__(self, read: Callable[[str, int], VersionRecord]) -> None:
        self._read = read
        self._records: dict[Key, VersionRecord] = {}

    async def get(self, model: str, version: int) -> VersionRecord:
        record = self._records.get((model, version))
        if record is None:
            record = await asyncio.to_thread(self._read, model, version)
            self._records[(model, version)] = record
        return record
