"""The routing table reads what changed, not every deployment, at each refresh."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import update

from tests.fixtures.fault_models import constant_model
from tests.fixtures.registry import open_registry
from turnout.gateway.pool import ModelPool
from turnout.gateway.table import RoutingTable
from turnout.lifecycle.deployments import Deployments, NewDeployment
from turnout.lifecycle.routing import RouteChange, Routing
from turnout.registry.servable import Servable
from turnout.registry.service import NewVersion, Registry
from turnout.store import metadata as md
from turnout.store import schema


def test_a_refresh_reads_only_the_deployments_that_changed(tmp_path: Path) -> None:
    with open_registry(tmp_path) as registry:
        for value in (1.0, 2.0):
            source = constant_model(tmp_path / str(value), value)
            registry.register(NewVersion(model="m", source=source, flavor="python"))
        deployments = Deployments(registry.db, registry)
        for i in range(40):
            deployments.create(NewDeployment(name=f"d{i}", model="m", version=1))
        with registry.db.write() as conn:  # created over the last 40 minutes
            for i in range(40):
                conn.execute(
                    update(schema.deployments)
                    .where(schema.deployments.c.name == f"d{i}")
                    .values(updated_at=datetime.now(UTC) - timedelta(minutes=40 - i))
                )
        read: list[int] = []

        def snapshot(since: datetime | None) -> list[tuple]:  # type: ignore[type-arg]
            with registry.db.read() as conn:
                rows = md.active_revisions(conn, since)
            read.append(len(rows))
            return rows

        def fingerprint() -> object:
            with registry.db.read() as conn:
                return md.routing_fingerprint(conn)

        async def scenario() -> None:
            table = RoutingTable(
                ModelPool(lambda model, version: _never(registry, model, version)),
                fingerprint=fingerprint,
                snapshot=snapshot,
                interval_s=60,
                on_unload=_nothing,
            )
            table.pool.get = _metadata_only(registry)  # type: ignore[method-assign]
            await table.refresh(force=True)
            assert len(table.routes) == 40
            Routing(registry.db, registry, warm_up=lambda record: None).route(
                RouteChange(deployment="d7", shadows={2: 100.0})
            )
            read.clear()
            await table.refresh()
            assert read == [2]  # the change, and the newest before it; not all 40
            assert table.routes["d7"].config.shadows == {2: 100.0}
            assert table.routes["d8"].config.shadows == {}
            assert len(table.routes) == 40

        asyncio.run(scenario())


async def _never(registry: Registry, model: str, version: int) -> Servable:
    raise AssertionError("not loaded in this test")


async def _nothing(keep: set[tuple[str, int]]) -> None:
    return None


def _metadata_only(registry: Registry):  # type: ignore[no-untyped-def]
    async def get(model: str, version: int) -> Servable:
        return registry.load(registry.get_version(model, version))

    return get


def test_unknown_names_cost_at_most_one_db_look_per_interval(tmp_path: Path) -> None:
    """1,000 requests for made-up deployment names are answered from the table in hand."""
    with open_registry(tmp_path) as registry:
        registry.register(
            NewVersion(model="m", source=constant_model(tmp_path / "v1", 1.0), flavor="python")
        )
        deployments = Deployments(registry.db, registry)
        deployments.create(NewDeployment(name="real", model="m", version=1))
        reads: list[str] = []

        def snapshot(since: datetime | None) -> list[tuple]:  # type: ignore[type-arg]
            reads.append("snapshot")
            with registry.db.read() as conn:
                return md.active_revisions(conn, since)

        def fingerprint() -> object:
            reads.append("fingerprint")
            with registry.db.read() as conn:
                return md.routing_fingerprint(conn)

        now = [0.0]

        async def scenario() -> None:
            table = RoutingTable(
                ModelPool(lambda model, version: _never(registry, model, version)),
                fingerprint=fingerprint,
                snapshot=snapshot,
                interval_s=1.0,
                on_unload=_nothing,
                clock=lambda: now[0],
            )
            table.pool.get = _metadata_only(registry)  # type: ignore[method-assign]
            await table.refresh(force=True)
            reads.clear()
            for i in range(1000):
                assert await table.lookup(f"nope-{i}") is None
            assert reads.count("fingerprint") == 1
            assert await table.lookup("real") is not None
            deployments.create(NewDeployment(name="new", model="m", version=1))
            assert await table.lookup("new") is None  # within the interval: not looked for
            now[0] += 1.0
            assert await table.lookup("new") is not None  # the next interval finds it
            assert reads.count("fingerprint") == 2

        asyncio.run(scenario())
