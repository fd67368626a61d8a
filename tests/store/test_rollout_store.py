"""Rollout records and the controller lease on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.store.test_metadata import register
from turnout.errors import Conflict
from turnout.store import leases
from turnout.store import metadata as md
from turnout.store import rollouts as rs
from turnout.store.db import Database
from turnout.store.records import RoutingConfig


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'turnout.db'}"
    else:
        url = request.getfixturevalue("pg_url")
    database = Database.from_url(url)
    database.migrate()
    register(database, "m")
    with database.write() as conn:
        deployment = md.insert_deployment(conn, "d", md.get_model(conn, "m"))
        md.add_revision(conn, deployment, RoutingConfig(champion=1), reason="create", actor="t")
    yield database
    database.dispose()


def test_a_step_moves_once_even_when_two_looks_race(db: Database) -> None:
    with db.write() as conn:
        rollout = rs.insert_rollout(
            conn, deployment="d", version=2, plan={}, step="warmup", base_revision=1, actor="t"
        )
    with db.write() as conn:
        moved = rs.update_rollout(conn, rollout, step="challenge:10")
    assert moved.step == "challenge:10"
    assert moved.step_started_at >= rollout.step_started_at
    with db.write() as conn, pytest.raises(Conflict):
        rs.update_rollout(conn, rollout, step="challenge:10")  # read before the first move
    with db.read() as conn:
        assert rs.active_rollout(conn, "d") is not None
        assert [r.id for r in rs.active_rollouts(conn)] == [rollout.id]
    with db.write() as conn:
        done = rs.update_rollout(conn, moved, state="succeeded")
        rs.add_event(conn, done, kind="succeeded", detail={"why": "test"})
    assert done.finished_at is not None
    with db.read() as conn:
        assert rs.active_rollout(conn, "d") is None
        assert rs.latest_rollout(conn, "d") == done
        assert [e["kind"] for e in rs.list_events(conn, done)] == ["succeeded"]


def test_one_holder_of_the_lease_among_many_contenders(db: Database) -> None:
    winners: list[str] = []

    def contend(name: str) -> None:
        with db.write() as conn:
            if leases.acquire_lease(conn, "controller", name, ttl_s=30):
                winners.append(name)

    threads = [threading.Thread(target=contend, args=(f"c{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(winners) == 1
    holder = winners[0]
    with db.write() as conn:
        assert leases.acquire_lease(conn, "controller", holder, ttl_s=30)  # renewal
        assert not leases.acquire_lease(conn, "controller", "late", ttl_s=30)
        leases.release_lease(conn, "controller", holder)
    with db.write() as conn:
        assert leases.acquire_lease(conn, "controller", "late", ttl_s=30)


def test_a_deployments_events_span_its_rollouts_oldest_first(db: Database) -> None:
    with db.write() as conn:
        first = rs.insert_rollout(
            conn, deployment="d", version=2, plan={}, step="warmup", base_revision=1, actor="t"
        )
        rs.add_event(conn, first, kind="started", detail={"by": "t"})
        rs.add_event(conn, first, kind="superseded", detail={"by_version": 3})
        second = rs.insert_rollout(
            conn, deployment="d", version=3, plan={}, step="warmup", base_revision=1, actor="t"
        )
        rs.add_event(conn, second, kind="started", detail={"by": "t"})
        other = md.insert_deployment(conn, "e", md.get_model(conn, "m"))
        md.add_revision(conn, other, RoutingConfig(champion=1), reason="create", actor="t")
        elsewhere = rs.insert_rollout(
            conn, deployment="e", version=2, plan={}, step="warmup", base_revision=1, actor="t"
        )
        rs.add_event(conn, elsewhere, kind="started", detail={"by": "t"})
    with db.read() as conn:
        events = rs.deployment_events(conn, "d")
        newest = rs.deployment_events(conn, "d", limit=1)
    assert [(e["version"], e["kind"]) for e in events] == [
        (2, "started"), (2, "superseded"), (3, "started")
    ]  # fmt: skip
    assert [e["rollout"] for e in events] == [first.id, first.id, second.id]
    assert [(e["version"], e["kind"]) for e in newest] == [(3, "started")]
