"""The composition root: builds stores, services, the gateway and the API from settings."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
from dataclasses import dataclass
from types import FrameType

from fastapi import FastAPI

from turnout import tracing
from turnout.api.app import create_api
from turnout.api.auth import Tokens
from turnout.api.deps import Services
from turnout.api.limits import ASGIApp, BodyLimits
from turnout.api.sessions import Sessions
from turnout.console.app import Console, ConsoleDoor
from turnout.feeds import LoopHolder, RoutingFeed, Scorer, Versions, WorkerRows
from turnout.gateway.access import Access, PredictAuth
from turnout.gateway.app import Gateway
from turnout.gateway.breaker import BreakerPolicy
from turnout.gateway.chain import Chain
from turnout.gateway.grpc.server import GrpcServer
from turnout.gateway.grpc.servicer import InferenceServicer
from turnout.gateway.heartbeat import Heartbeat, new_worker_id
from turnout.gateway.pool import ModelPool, RecordCache
from turnout.gateway.shadow import ShadowMirror
from turnout.gateway.table import RoutingTable
from turnout.lifecycle.controller import Controller
from turnout.lifecycle.deployments import Deployments
from turnout.lifecycle.notify import Notifier
from turnout.lifecycle.retrain.executor import Executor, LocalExecutor, child_env
from turnout.lifecycle.retrain.ray_executor import RayExecutor, dashboard_address
from turnout.lifecycle.retrain.service import Retraining
from turnout.lifecycle.rollouts import Rollouts
from turnout.lifecycle.routing import Routing
from turnout.lifecycle.sources import DataAccess
from turnout.monitoring.layout import writer_name
from turnout.monitoring.predlog import PredictionLogger
from turnout.monitoring.prometheus import FleetCollector, WorkerSnapshot
from turnout.monitoring.remote import remote_log
from turnout.monitoring.service import Monitor
from turnout.monitoring.stats import TrafficStats
from turnout.registry.service import Registry
from turnout.settings import Settings
from turnout.store.artifacts import open_artifact_store
from turnout.store.db import Database
from turnout.store.modes import private_home
from turnout.types import Receive, Scope, Send
from turnout.where import Where, where

log = logging.getLogger("turnout")

MAX_BODY_BYTES = 64 << 20
SETTLE_MARGIN_S = 1.0
"""Added to the log flush interval: how long actuals wait for ids still in a worker's buffer."""
RESERVE_S = 60.0
"""How long a runner started for a pending change is kept before any revision names it."""


@dataclass
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
        here: Where | None = None,
        monitor: Monitor | None = None,
    ) -> None:
        self.gateway = gateway
        self.monitor = monitor
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
        self.here = here
        """Where this worker's models run (None: the gateway's runner needs no start)."""
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
        if self.here is not None:
            await self.here.watch(self.table.poke)
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
        if self.monitor is not None:  # and the actuals taken reach a shared log
            await asyncio.to_thread(self.monitor.close)
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

    loop = LoopHolder()
    versions = RecordCache(registry.get_version)
    here = where(settings, registry, versions)

    known = Versions(registry, versions)
    pool = ModelPool(here.load)
    feed = RoutingFeed(db)
    warm, on_routes = here.table_hooks(pool)
    table = RoutingTable(
        pool,
        fingerprint=feed.fingerprint,
        snapshot=feed.snapshot,
        interval_s=settings.refresh_interval_ms / 1000,
        on_unload=here.keep_only,
        warm=warm,
        on_routes=on_routes,
    )
    rows = WorkerRows(db)
    worker_id = new_worker_id()
    writer = writer_name(worker_id)
    shared_log = remote_log(settings)  # an unreachable store stops the start, naming it
    logger = (
        PredictionLogger(
            settings.log_root,
            writer,
            max_buffered_rows=settings.log_buffer_rows,
            flush_interval_s=settings.log_flush_ms / 1000,
            retention_days=settings.log_retention_days,
            compact_interval_s=settings.log_compact_s,
            process=_log_writer_process(settings),
            remote=shared_log,
        )
        if settings.log_predictions
        else None
    )
    stats = TrafficStats()
    chain = Chain(
        here.live,
        stats,
        pool.get,
        policy=BreakerPolicy(),
        max_pending_rows=settings.max_pending_rows,
    )
    gateway = Gateway(
        table,
        pool,
        here.live,
        stats=stats,
        shadow=ShadowMirror(stats, pool.get, here.shadows, logger=logger),
        chain=chain,
        max_body_bytes=MAX_BODY_BYTES,
        versions_of=known.numbers,
        signature_of=known.signature,
        logger=logger,
        access=Access(mode=PredictAuth(settings.predict_auth), tokens=tokens.unrevoked),
    )
    heartbeat = Heartbeat(
        table,
        stats,
        report=rows.report,
        forget=rows.forget,
        breakers=chain.snapshot,
        logging=logger.stats if logger is not None else dict,
        worker_id=worker_id,
    )

    def poke_here() -> None:
        if loop.running is not None:
            loop.running.call_soon_threadsafe(table.poke)

    routing = Routing(
        db,
        registry,
        warm_up=lambda record: here.warm_up(record, pool),
        poke=lambda: here.poke(poke_here),
    )
    notifier = Notifier(settings.webhook_url, secret=settings.webhook_secret)
    rollouts = Rollouts(db, registry, routing, notifier=notifier)
    monitor = Monitor(
        db,
        registry,
        settings.log_root,
        writer=writer,
        settle_s=settings.log_flush_ms / 1000 + SETTLE_MARGIN_S,
        logging=lambda: [w.logging for w in routing.live_workers()],
        remote=shared_log,
        retention_days=settings.log_retention_days,
    )

    data_access = DataAccess.from_settings(settings)
    retraining = Retraining(
        db,
        registry,
        monitor,
        rollouts,
        job_executor(settings),
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
        predict=Scorer(pool, here.live, loop),
        retraining=retraining,
        access=data_access,
    )
    services = Services(
        registry=registry,
        deployments=Deployments(db, registry, model_memory_bytes=here.model_memory_bytes),
        routing=routing,
        rollouts=rollouts,
        retraining=retraining,
        monitor=monitor,
        tokens=tokens,
        upload_dir=settings.home / "tmp",
        max_upload_bytes=settings.max_upload_mb << 20,
        data_access=data_access,
        hosting=here.status,
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
        monitor=monitor,
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
        here=here,
    )


def job_executor(settings: Settings) -> Executor:
    """Where retrain and batch jobs run: this machine, or a Ray cluster."""
    jobs_dir, env = settings.home / "jobs", child_env(settings)
    if settings.executor == "local":
        return LocalExecutor(jobs_dir, env)
    return RayExecutor(dashboard_address(settings.executor), jobs_dir, env)


def _log_writer_process(settings: Settings) -> bool:
    return settings.log_writer == "process"


def create_app_from_env() -> TurnoutApp:
    """Factory for uvicorn worker processes: settings come from TURNOUT_* variables."""
    logging.basicConfig(level=os.environ.get("TURNOUT_LOG_LEVEL", "WARNING").upper())
    return create_app(Settings())
