"""The composition root: builds stores, services, the gateway and the API from settings."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import gc
import logging
import os
import signal
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any

from fastapi import FastAPI

from turnout import tracing
from turnout.api.app import create_api
from turnout.api.auth import Tokens
from turnout.api.deps import Services
from turnout.api.limits import ASGIApp, BodyLimits
from turnout.api.sessions import Sessions
from turnout.console.app import Console, ConsoleDoor
from turnout.gateway.access import Access, PredictAuth
from turnout.gateway.app import Gateway
from turnout.gateway.breaker import BreakerPolicy
from turnout.gateway.chain import Chain
from turnout.gateway.grpc.server import GrpcServer
from turnout.gateway.grpc.servicer import InferenceServicer
from turnout.gateway.heartbeat import Heartbeat, new_worker_id
from turnout.gateway.pool import ModelPool, RecordCache
from turnout.gateway.runner import InProcessRunner, Runner
from turnout.gateway.shadow import ShadowMirror
from turnout.gateway.table import Route, RoutingTable
from turnout.host.client import HostInspector, HostProcess, HostRunner, SyncHost
from turnout.lifecycle.controller import Controller
from turnout.lifecycle.deployments import Deployments
from turnout.lifecycle.notify import Notifier
from turnout.lifecycle.retrain.executor import LocalExecutor, child_env
from turnout.lifecycle.retrain.service import Retraining
from turnout.lifecycle.rollouts import Rollouts
from turnout.lifecycle.routing import Routing
from turnout.lifecycle.sources import DataAccess
from turnout.monitoring.layout import writer_name
from turnout.monitoring.predlog import PredictionLogger
from turnout.monitoring.prometheus import FleetCollector, WorkerSnapshot
from turnout.monitoring.service import Monitor
from turnout.monitoring.stats import TrafficStats
from turnout.registry.flavors.remote import RemoteModel
from turnout.registry.servable import Servable
from turnout.registry.service import Registry
from turnout.registry.signature import Signature
from turnout.settings import Settings
from turnout.store import metadata as md
from turnout.store.artifacts import open_artifact_store
from turnout.store.db import Database
from turnout.store.modes import private_home
from turnout.store.records import VersionRecord
from turnout.types import Receive, Scope, Send

log = logging.getLogger("turnout")

MAX_BODY_BYTES = 64 << 20
SETTLE_MARGIN_S = 1.0
"""Added to the log flush interval: how long actuals wait for ids still in a worker's buffer."""
RESERVE_S = 60.0
"""How long a runner started for a pending change is kept before any revision names it."""


@dataclass
class LoopHolder:
    """The worker's event loop once it runs, for API threads that must hand it work."""

    running: asyncio.AbstractEventLoop | None = None


class TurnoutApp:
    """One ASGI app per worker: prediction paths go to the gateway, the rest to the API."""

    def __init__(
        self,
        *,
        gateway: Gateway,
        api: FastAPI,
        table: RoutingTable,
        heartbeat: Heartbeat,
        db: Database,
        loop: LoopHolder,
        controller: Controller | None = None,
        shutdown_grace_s: float = 0.0,
        management: ASGIApp | None = None,
        grpc: GrpcServer | None = None,
    ) -> None:
        self.gateway = gateway
        self.api = api
        self.management = management or api
        """The API behind its door (token before body, bounded bodies)."""
        self.table = table
        self.heartbeat = heartbeat
        self.db = db
        self.loop = loop
        self.controller = controller
        self.shutdown_grace_s = shutdown_grace_s
        self.grpc = grpc
        """The OIP gRPC listener beside HTTP, on this worker's loop; None when off."""
        self._refresher: asyncio.Task[None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if self.gateway.serves(path):
                await self.gateway(scope, receive, send)
                return
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        await self.management(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def start(self) -> None:
        self.loop.running = asyncio.get_running_loop()
        self._drain_on_sigterm()
        try:
            await self.table.refresh(force=True)
        except Exception:  # serve health and the API even if a model cannot load yet
            log.exception("initial routing load failed")
        # Everything loaded so far (libraries, models) lives as long as the process: moving it
        # out of the collector's sight keeps full collections short under load.
        gc.collect()
        gc.freeze()
        if isinstance(self.gateway.runner, HostRunner):
            await self.gateway.runner.watch(self.table.poke)
        self._refresher = asyncio.create_task(self.table.run())
        self.gateway.shadow.start()
        if self.gateway.logger is not None:
            self.gateway.logger.attach(self.loop.running)
            self.gateway.logger.start()
        self.heartbeat.start()
        if self.controller is not None:
            self.controller.start()
        if self.grpc is not None:  # last: calls arrive only once everything above runs
            await self.grpc.start()

    def _drain_on_sigterm(self) -> None:
        """SIGTERM first turns readiness off (load balancers stop sending), waits the grace
        period, then lets the server drain in-flight requests and shut down."""
        previous = signal.getsignal(signal.SIGTERM)
        if not callable(previous):
            return
        loop = asyncio.get_running_loop()

        def on_sigterm(signum: int, frame: FrameType | None) -> None:
            self.gateway.accepting = False
            if self.shutdown_grace_s > 0:
                loop.call_soon_threadsafe(
                    loop.call_later, self.shutdown_grace_s, previous, signum, frame
                )
            else:
                previous(signum, frame)

        signal.signal(signal.SIGTERM, on_sigterm)

    async def stop(self) -> None:
        self.gateway.accepting = False
        if self.grpc is not None:  # first: calls in flight finish while models still run
            await self.grpc.stop()
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
        if self.controller is not None:
            await asyncio.to_thread(self.controller.stop)
        await self.gateway.shadow.stop()
        if self.gateway.logger is not None:  # everything buffered reaches disk
            await asyncio.to_thread(self.gateway.logger.close)
        await self.heartbeat.stop()
        await self.gateway.runner.close()
        await asyncio.to_thread(tracing.shutdown)  # spans still buffered go out
        self.db.dispose()


def create_app(settings: Settings) -> TurnoutApp:
    private_home(settings.home)
    tracing.configure(settings.tracing)
    db = Database.from_url(settings.db_url, busy_timeout_ms=settings.sqlite_busy_timeout_ms)
    db.migrate()
    artifacts = open_artifact_store(settings.artifacts)
    registry = Registry(
        db,
        artifacts,
        work_dir=settings.cache_dir / "load" / str(os.getpid()),
        allow_pickle=settings.allow_pickle,
    )
    tokens = Tokens(db)
    tokens.ensure_admin(
        settings.admin_token_file,
        settings.admin_token.get_secret_value() if settings.admin_token else None,
    )

    host = _host(settings)
    live, shadows = _runners(settings, host)
    if host is not None:
        registry.inspector = HostInspector(
            SyncHost(host.socket), timeout_s=settings.register_timeout_ms / 1000
        )
    loop = LoopHolder()
    versions = RecordCache(registry.get_version)

    async def load(model: str, version: int) -> Servable:
        if isinstance(live, HostRunner):  # the model itself loads in the host, on demand
            record = await versions.get(model, version)
            return Servable(record, Signature.from_dict(record.signature), RemoteModel(record.ref))
        return await asyncio.to_thread(_load_here, registry, model, version)

    def warm_up(record: VersionRecord) -> None:
        """Called from API threads before a change: load where models run and keep it."""
        if host is not None:
            SyncHost(host.socket).place(record)
        elif pool.peek(record.model, record.version) is None:
            _load_here(registry, record.model, record.version)

    async def unload(keep: set[tuple[str, int]]) -> None:
        await live.keep_only(keep)
        if shadows is not live:
            await shadows.keep_only(keep)

    def fingerprint() -> Any:
        with db.read() as conn:
            return md.routing_fingerprint(conn)

    def snapshot(since: datetime | None = None) -> list[Any]:
        with db.read() as conn:
            return md.active_revisions(conn, since)

    async def signature_of(model: str, version: int) -> Signature:
        return Signature.from_dict((await versions.get(model, version)).signature)

    def versions_of(model: str) -> list[int]:
        return [v.version for v in registry.list_versions(model)]

    pool = ModelPool(load)
    table = RoutingTable(
        pool,
        fingerprint=fingerprint,
        snapshot=snapshot,
        interval_s=settings.refresh_interval_ms / 1000,
        on_unload=unload,
        warm=live.warm if isinstance(live, HostRunner) else None,
        on_routes=(lambda routes: _tell_host(live, pool, routes))
        if isinstance(live, HostRunner)
        else None,
    )

    def report(**payload: Any) -> None:
        with db.write() as conn:
            md.report_worker(conn, **payload)

    def forget(worker_id: str) -> None:
        with db.write() as conn:
            md.forget_worker(conn, worker_id)

    worker_id = new_worker_id()
    writer = writer_name(worker_id)
    logger = (
        PredictionLogger(
            settings.log_root,
            writer,
            max_buffered_rows=settings.log_buffer_rows,
            flush_interval_s=settings.log_flush_ms / 1000,
            retention_days=settings.log_retention_days,
            compact_interval_s=settings.log_compact_s,
            process=_log_writer_process(settings),
        )
        if settings.log_predictions
        else None
    )
    stats = TrafficStats()
    chain = Chain(
        live,
        stats,
        pool.get,
        policy=BreakerPolicy(),
        max_pending_rows=settings.max_pending_rows,
    )
    gateway = Gateway(
        table,
        pool,
        live,
        stats=stats,
        shadow=ShadowMirror(stats, pool.get, shadows, logger=logger),
        chain=chain,
        max_body_bytes=MAX_BODY_BYTES,
        versions_of=versions_of,
        signature_of=signature_of,
        logger=logger,
        access=Access(mode=PredictAuth(settings.predict_auth), tokens=tokens.unrevoked),
    )
    heartbeat = Heartbeat(
        table,
        stats,
        report=report,
        forget=forget,
        breakers=chain.snapshot,
        logging=logger.stats if logger is not None else dict,
        worker_id=worker_id,
    )

    def poke() -> None:
        """After a change is written: the node's workers look at once (through the host,
        which every worker hears; or this worker's own table when models run in threads)."""
        if host is not None:
            SyncHost(host.socket).changed()
        elif loop.running is not None:
            loop.running.call_soon_threadsafe(table.poke)

    routing = Routing(db, registry, warm_up=warm_up, poke=poke)
    notifier = Notifier(settings.webhook_url, secret=settings.webhook_secret)
    rollouts = Rollouts(db, registry, routing, notifier=notifier)
    monitor = Monitor(
        db,
        registry,
        settings.log_root,
        writer=writer,
        settle_s=settings.log_flush_ms / 1000 + SETTLE_MARGIN_S,
        logging=lambda: [w.logging for w in routing.live_workers()],
    )

    def score(model: str, version: int, rows: Any) -> Any:
        """A version's prediction for the validate step, where models run."""

        async def run() -> Any:
            servable = await pool.get(model, version)
            return await live.predict(servable, rows)

        assert loop.running is not None
        return asyncio.run_coroutine_threadsafe(run(), loop.running).result(timeout=300)

    data_access = DataAccess.from_settings(settings)
    retraining = Retraining(
        db,
        registry,
        monitor,
        rollouts,
        LocalExecutor(settings.home / "jobs", child_env(settings)),
        notify=notifier.send,
        access=data_access,
    )
    controller = Controller(
        db,
        rollouts,
        routing,
        monitor,
        interval_s=settings.controller_interval_ms / 1000,
        notifier=notifier,
        predict=score,
        retraining=retraining,
        access=data_access,
    )
    services = Services(
        registry=registry,
        deployments=Deployments(
            db, registry, model_memory_bytes=settings.model_memory_bytes if host else None
        ),
        routing=routing,
        rollouts=rollouts,
        retraining=retraining,
        monitor=monitor,
        tokens=tokens,
        upload_dir=settings.home / "tmp",
        max_upload_bytes=settings.max_upload_mb << 20,
        data_access=data_access,
        hosting=SyncHost(host.socket).status if host is not None else dict,
    )
    api = create_api(
        services,
        fleet=FleetCollector(
            routing.live_workers, lambda: WorkerSnapshot.from_report(heartbeat.payload())
        ),
    )
    return TurnoutApp(
        gateway=gateway,
        api=api,
        management=ConsoleDoor(
            BodyLimits(
                api, authenticate=tokens.authenticate, max_upload_bytes=settings.max_upload_mb << 20
            ),
            Console(Sessions(tokens)),
        ),
        table=table,
        heartbeat=heartbeat,
        db=db,
        loop=loop,
        controller=controller,
        shutdown_grace_s=settings.shutdown_grace_ms / 1000,
        grpc=GrpcServer(
            InferenceServicer(gateway),
            host=settings.host,
            port=settings.grpc_port,
            max_message_bytes=MAX_BODY_BYTES,
            share_port=settings.workers > 1,
        )
        if settings.grpc_port
        else None,
    )


def _host(settings: Settings) -> HostProcess | None:
    """The node's model host: the one `turnout serve` started for every worker, or one of
    this worker's own when the app is built some other way."""
    if settings.runner == "thread":
        return None
    if settings.host_socket:
        return HostProcess.attach(Path(settings.host_socket))
    host = HostProcess.start()
    atexit.register(host.stop)
    return host


def _runners(settings: Settings, host: HostProcess | None) -> tuple[Runner, Runner]:
    """Runners for live traffic and for shadows.

    Threads: shadows get their own small pool, never the live one. Model host: runners are
    shared by the whole node, and a version's work runs in whichever holds it.
    """
    if host is None:
        return InProcessRunner(settings.predict_threads), InProcessRunner(2)
    runner = HostRunner(host.socket)
    return runner, runner


def _load_here(registry: Registry, model: str, version: int) -> Servable:
    servable = registry.load(registry.get_version(model, version))
    servable.warm()
    return servable


async def _tell_host(runner: HostRunner, pool: ModelPool, routes: dict[str, Route]) -> None:
    """What the host needs from the routing table: routed versions, pinned champions,
    isolation and replica limits per version, and versions only shadows route to."""
    pinned, isolation, replicas = [], {}, {}
    live: set[str] = set()
    mirrored: set[str] = set()
    for route in routes.values():
        config = route.config
        keys = [f"{route.model}:{v}" for v in config.versions()]
        if config.keep_loaded:
            pinned.append(f"{route.model}:{config.champion}")
        shadows_only = set(config.shadows) - set(config.challengers)
        shadows_only -= {config.champion, config.failover, config.standby}
        for version in config.versions():
            key = f"{route.model}:{version}"
            (mirrored if version in shadows_only else live).add(key)
        for key in keys:
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


def _log_writer_process(settings: Settings) -> bool:
    return settings.log_writer == "process"


def create_app_from_env() -> TurnoutApp:
    """Factory for uvicorn worker processes: settings come from TURNOUT_* variables."""
    logging.basicConfig(level=os.environ.get("TURNOUT_LOG_LEVEL", "WARNING").upper())
    return create_app(Settings())
