"""Archive and delete through the services: refused while anything live needs the thing,
audited, and a deleted deployment leaves the gateways' routing table."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from tests.fixtures.registry import open_registry
from tests.fixtures.routing_models import constant_model
from turnout.errors import Conflict, NotFound
from turnout.gateway.pool import ModelPool
from turnout.gateway.table import RoutingTable
from turnout.lifecycle.deployments import Deployments, NewDeployment
from turnout.lifecycle.retire import Retirement
from turnout.lifecycle.rollouts import Rollouts
from turnout.lifecycle.routing import RouteChange, Routing
from turnout.registry.servable import Servable
from turnout.registry.service import NewVersion, Registry
from turnout.store import metadata as md


class Stack:
    def __init__(self, root: Path, registry: Registry) -> None:
        self.registry = registry
        self.db = registry.db
        self.deployments = Deployments(self.db, registry)
        self.routing = Routing(self.db, registry, warm_up=lambda record: None)
        self.rollouts = Rollouts(self.db, registry, self.routing)
        self.retire = Retirement(self.db)
        for value in (1, 2, 3):
            registry.register(NewVersion(
                model="m", source=constant_model(root / f"v{value}", value), flavor="python"
            ))  # fmt: skip
        self.deployments.create(NewDeployment(name="d", model="m", version=1))

    def audit(self) -> list[tuple[str, str, str]]:
        with self.db.read() as conn:
            return [(str(e["actor"]), str(e["action"]), str(e["target"]))
                    for e in md.list_audit(conn)]  # fmt: skip


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with open_registry(tmp_path) as registry:
        yield Stack(tmp_path, registry)


def test_an_archived_version_is_readable_but_never_newly_routed(stack: Stack) -> None:
    archived = stack.retire.archive_version("m", 2, actor="alice")
    assert archived.archived_at is not None
    assert stack.registry.get_version("m", 2).archived_at is not None
    with pytest.raises(Conflict, match="m:2 is archived"):
        stack.deployments.create(NewDeployment(name="e", model="m", version=2))
    with pytest.raises(Conflict, match="archived"):
        stack.routing.route(RouteChange(deployment="d", shadows={2: 100.0}))
    with pytest.raises(Conflict, match="archived"):
        stack.routing.promote("d", 2, actor="alice")
    with pytest.raises(Conflict, match="archived"):
        stack.rollouts.start("d", 2, None, actor="alice")
    stack.routing.route(RouteChange(deployment="d", shadows={3: 100.0}))  # others still can
    assert ("alice", "version.archive", "m:2") in stack.audit()


def test_archiving_a_serving_version_keeps_it_serving(stack: Stack) -> None:
    stack.retire.archive_version("m", 1, actor="alice")
    assert stack.routing.current("d").champion == 1
    stack.routing.promote("d", 2, actor="alice")
    stack.routing.rollback("d", to_revision=None, actor="alice")  # rollback stays possible
    assert stack.routing.current("d").champion == 1


@pytest.mark.parametrize("role", ["challenger", "shadow", "standby"])
def test_a_version_in_the_active_revision_cannot_be_deleted(stack: Stack, role: str) -> None:
    if role == "challenger":
        stack.routing.route(RouteChange(deployment="d", challengers={2: 10.0}))
    elif role == "shadow":
        stack.routing.route(RouteChange(deployment="d", shadows={2: 100.0}))
    else:
        stack.routing.promote("d", 2, actor="t")
        stack.routing.promote("d", 3, actor="t")  # 2 becomes standby
    with pytest.raises(Conflict, match="m:2 is in use by deployment 'd'"):
        stack.retire.delete_version("m", 2, actor="alice")
    assert stack.registry.get_version("m", 2).version == 2


def test_a_rollout_candidate_cannot_be_deleted_or_archived(stack: Stack) -> None:
    stack.rollouts.start("d", 2, None, actor="alice")
    with pytest.raises(Conflict, match="the rollout of 'd'"):
        stack.retire.delete_version("m", 2, actor="alice")
    with pytest.raises(Conflict, match="abort the rollout before archiving"):
        stack.retire.archive_version("m", 2, actor="alice")
    stack.rollouts.abort("d", actor="alice")
    stack.retire.archive_version("m", 2, actor="alice")


def test_an_unused_version_is_deleted_and_audited(stack: Stack) -> None:
    stack.routing.route(RouteChange(deployment="d", shadows={2: 100.0}))
    stack.routing.route(RouteChange(deployment="d", clear=True))
    stack.retire.delete_version("m", 2, actor="alice")
    with pytest.raises(NotFound):
        stack.registry.get_version("m", 2)
    assert ("alice", "version.delete", "m:2") in stack.audit()
    with pytest.raises(NotFound):  # a revision naming it can no longer be rolled back to
        stack.routing.rollback("d", to_revision=2, actor="alice")


def test_a_model_is_deleted_only_without_deployments(stack: Stack) -> None:
    with pytest.raises(Conflict, match="model 'm' has deployments \\(d\\)"):
        stack.retire.delete_model("m", actor="alice")
    stack.retire.delete_deployment("d", actor="alice")
    stack.retire.delete_model("m", actor="alice")
    with pytest.raises(NotFound):
        stack.registry.get_version("m", 1)
    assert stack.audit()[-2:] == [
        ("alice", "deployment.delete", "d"),
        ("alice", "model.delete", "m"),
    ]


def test_a_deployment_is_not_deleted_during_a_rollout(stack: Stack) -> None:
    stack.rollouts.start("d", 2, None, actor="alice")
    with pytest.raises(Conflict, match=r"rollout .* is in progress"):
        stack.retire.delete_deployment("d", actor="alice")
    stack.rollouts.abort("d", actor="alice")
    stack.retire.delete_deployment("d", actor="alice")
    with pytest.raises(NotFound):
        stack.deployments.get("d")


def test_gateways_drop_a_deleted_deployment(stack: Stack) -> None:
    stack.deployments.create(NewDeployment(name="e", model="m", version=2))
    registry = stack.registry

    def snapshot(since: datetime | None) -> list[tuple]:  # type: ignore[type-arg]
        with registry.db.read() as conn:
            return md.active_revisions(conn, since)

    def fingerprint() -> object:
        with registry.db.read() as conn:
            return md.routing_fingerprint(conn)

    async def load(model: str, version: int) -> Servable:
        return registry.load(registry.get_version(model, version))

    unloaded: list[set[tuple[str, int]]] = []

    async def keep(needed: set[tuple[str, int]]) -> None:
        unloaded.append(needed)

    async def scenario() -> None:
        table = RoutingTable(
            ModelPool(load), fingerprint=fingerprint, snapshot=snapshot, interval_s=60,
            on_unload=keep,
        )  # fmt: skip
        await table.refresh(force=True)
        assert set(table.routes) == {"d", "e"}
        stack.retire.delete_deployment("e", actor="alice")
        await table.refresh()
        assert set(table.routes) == {"d"}
        assert await table.lookup("e") is None
        assert unloaded[-1] == {("m", 1)}  # 2 is no longer kept loaded

    asyncio.run(scenario())


def test_deleting_a_version_keeps_blobs_other_versions_use(stack: Stack, tmp_path: Path) -> None:
    same = stack.registry.register(
        NewVersion(model="m", source=constant_model(tmp_path / "v1", 1), flavor="python")
    )
    assert same.artifact == stack.registry.get_version("m", 1).artifact
    stack.routing.promote("d", 2, actor="t")
    stack.routing.promote("d", 3, actor="t")  # 1 leaves the active revision
    stack.retire.delete_version("m", 1, actor="alice")
    stack.registry.verify(stack.registry.get_version("m", same.version))


def test_the_routing_fingerprint_moves_when_a_new_deployment_takes_a_deleted_ones_id(
    stack: Stack,
) -> None:
    """SQLite hands a deleted row's id to the next row: count, revisions and the newest id
    alone would say nothing changed, and gateways would keep serving the deleted one."""
    stack.deployments.create(NewDeployment(name="e", model="m", version=2))
    with stack.db.read() as conn:
        before = md.routing_fingerprint(conn)
    stack.retire.delete_deployment("e", actor="alice")
    stack.deployments.create(NewDeployment(name="f", model="m", version=2))
    with stack.db.read() as conn:
        assert md.get_deployment(conn, "f").id == md.routing_fingerprint(conn)[2]
        assert md.routing_fingerprint(conn) != before
