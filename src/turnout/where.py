"""Where a gateway worker's models run: in the node's model host (`TURNOUT_RUNNER=process`,
the default) or in the worker's own threads (`thread`). The composition root builds one and
asks it, instead of testing the mode wherever the two differ.
"""

from __future__ import annotations

import asyncio
import atexit
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from turnout.gateway.pool import ModelPool, RecordCache
from turnout.gateway.runner import InProcessRunner, Runner
from turnout.gateway.table import Route
from turnout.host.client import HostInspector, HostProcess, HostRunner, SyncHost
from turnout.registry.flavors.remote import RemoteModel
from turnout.registry.servable import Servable
from turnout.registry.service import Registry
from turnout.registry.signature import Signature
from turnout.settings import Settings
from turnout.store.records import VersionRecord

Poke = Callable[[], None]


class Where(Protocol):
    live: Runner
    """Runs live traffic."""
    shadows: Runner
    """Runs shadow copies (never the live runner's threads)."""
    model_memory_bytes: int | None
    """What all loaded models may take on the node (None: not bounded here)."""

    async def load(self, model: str, version: int) -> Servable:
        """A version ready to be called (its model may load later, where it runs)."""
        ...

    def warm_up(self, record: VersionRecord, pool: ModelPool) -> None:
        """From an API thread, before a change routes to `record`: load it where it runs."""
        ...

    def poke(self, local: Poke) -> None:
        """After a change is written: make the node's workers look now (`local` makes this
        worker's table look)."""
        ...

    def status(self) -> dict[str, Any]:
        """`GET /api/v1/host`: what is loaded where (empty without a host)."""
        ...

    async def watch(self, on_change: Poke) -> None:
        """Have `on_change` called when another process writes a routing change."""
        ...

    async def keep_only(self, keep: set[tuple[str, int]]) -> None:
        """Let go of versions no revision routes to this worker any more."""
        ...

    def table_hooks(
        self, pool: ModelPool
    ) -> tuple[
        Callable[[Servable], Awaitable[None]] | None,
        Callable[[dict[str, Route]], Awaitable[None]] | None,
    ]:
        """What the routing table calls to warm a version and to report its routes."""
        ...


class InThreads:
    """Models loaded in this worker and called on its thread pools."""

    def __init__(self, registry: Registry, settings: Settings) -> None:
        self.registry = registry
        self.model_memory_bytes: int | None = None
        self.live: Runner = InProcessRunner(settings.predict_threads)
        self.shadows: Runner = InProcessRunner(2)

    async def load(self, model: str, version: int) -> Servable:
        return await asyncio.to_thread(self._load, model, version)

    def _load(self, model: str, version: int) -> Servable:
        servable = self.registry.load(self.registry.get_version(model, version))
        servable.warm()
        return servable

    def warm_up(self, record: VersionRecord, pool: ModelPool) -> None:
        if pool.peek(record.model, record.version) is None:
            self._load(record.model, record.version)

    def poke(self, local: Poke) -> None:
        local()

    def status(self) -> dict[str, Any]:
        return {}

    async def watch(self, on_change: Poke) -> None:
        return None  # this worker's table polls the database

    async def keep_only(self, keep: set[tuple[str, int]]) -> None:
        await self.live.keep_only(keep)
        await self.shadows.keep_only(keep)

    def table_hooks(self, pool: ModelPool) -> tuple[None, None]:
        return None, None


class InHost:
    """Models in the node's model host: one supervisor and its runners for every worker."""

    def __init__(
        self, host: HostProcess, registry: Registry, settings: Settings, versions: RecordCache
    ) -> None:
        self.host = host
        self.versions = versions
        self.runner = HostRunner(host.socket)
        self.live: Runner = self.runner
        self.shadows: Runner = self.runner
        self.model_memory_bytes: int | None = settings.model_memory_bytes
        registry.inspector = HostInspector(
            SyncHost(host.socket), timeout_s=settings.register_timeout_ms / 1000
        )

    @classmethod
    def of(cls, settings: Settings, registry: Registry, versions: RecordCache) -> InHost:
        """The host `turnout serve` started for every worker, or one of this worker's own
        when the app is built some other way."""
        if settings.host_socket:
            host = HostProcess.attach(Path(settings.host_socket))
        else:
            host = HostProcess.start()
            atexit.register(host.stop)
        return cls(host, registry, settings, versions)

    async def load(self, model: str, version: int) -> Servable:
        record = await self.versions.get(model, version)
        return Servable(record, Signature.from_dict(record.signature), RemoteModel(record.ref))

    def warm_up(self, record: VersionRecord, pool: ModelPool) -> None:
        SyncHost(self.host.socket).place(record)

    def poke(self, local: Poke) -> None:
        SyncHost(self.host.socket).changed()  # every worker hears it from the host

    def status(self) -> dict[str, Any]:
        return SyncHost(self.host.socket).status()

    async def watch(self, on_change: Poke) -> None:
        await self.runner.watch(on_change)  # the host tells every worker of a change

    async def keep_only(self, keep: set[tuple[str, int]]) -> None:
        await self.runner.keep_only(keep)

    def table_hooks(
        self, pool: ModelPool
    ) -> tuple[
        Callable[[Servable], Awaitable[None]], Callable[[dict[str, Route]], Awaitable[None]]
    ]:
        async def routes(table: dict[str, Route]) -> None:
            await tell_host(self.runner, pool, table)

        return self.runner.warm, routes


def where(settings: Settings, registry: Registry, versions: RecordCache) -> Where:
    if settings.runner == "thread":
        return InThreads(registry, settings)
    return InHost.of(settings, registry, versions)


async def tell_host(runner: HostRunner, pool: ModelPool, routes: dict[str, Route]) -> None:
    """What the host needs from the routing table: routed versions, pinned champions,
    isolation and replica limits per version, and versions only shadows route to."""
    pinned, isolation, replicas = [], {}, {}
    live: set[str] = set()
    mirrored: set[str] = set()
    for route in routes.values():
        config = route.config
        if config.keep_loaded:
            pinned.append(f"{route.model}:{config.champion}")
        shadows_only = set(config.shadows) - set(config.challengers)
        shadows_only -= {config.champion, config.failover, config.standby}
        for version in config.versions():
            key = f"{route.model}:{version}"
            (mirrored if version in shadows_only else live).add(key)
            if config.isolation:
                isolation[key] = config.isolation
            if config.max_replicas:
                replicas[key] = config.max_replicas
    servables = [pool.peek(*key) for key in pool.loaded()]
    await runner.routed(
        [s for s in servables if s is not None],
        {
            "pinned": pinned,
            "isolation": isolation,
            "max_replicas": replicas,
            "shadow_only": sorted(mirrored - live),
        },
    )
