"""What still uses a version, and removing versions, models and deployments, on SQLite and
PostgreSQL."""

from __future__ import annotations

from sqlalchemy import func, select

from tests.store.test_metadata import db, register
from turnout.store import jobs as js
from turnout.store import metadata as md
from turnout.store import removal, schema
from turnout.store import rollouts as rs
from turnout.store.db import Database
from turnout.store.records import RoutingConfig

__all__ = ["db"]


def deploy(db: Database, name: str, config: RoutingConfig) -> None:
    with db.write() as conn:
        deployment = md.insert_deployment(conn, name, md.get_model(conn, "m"))
        md.add_revision(conn, deployment, config, reason="t", actor="t")


def test_every_role_of_an_active_revision_and_running_rollouts_use_a_version(
    db: Database,
) -> None:
    for _ in range(7):
        register(db, "m")
    deploy(db, "a", RoutingConfig(champion=1, challengers={2: 10.0}, shadows={3: 100.0}))
    deploy(db, "b", RoutingConfig(champion=1, failover=4, standby=5))
    with db.write() as conn:
        b = md.get_deployment(conn, "b")
        md.add_revision(conn, b, RoutingConfig(champion=1, failover=4, standby=5), reason="t",
                        actor="t")  # fmt: skip
        rs.insert_rollout(conn, deployment="b", version=6, plan={}, step="validate",
                          base_revision=2, actor="alice")  # fmt: skip
    with db.read() as conn:
        users = removal.users_of_versions(conn, md.get_model(conn, "m").id)
    assert sorted(users) == [1, 2, 3, 4, 5, 6]
    assert users[1] == ["deployment 'a'", "deployment 'b'"]
    assert users[6] == ["the rollout of 'b'"]
    assert 7 not in users


def test_archive_flag_round_trips(db: Database) -> None:
    register(db, "m")
    with db.write() as conn:
        record = md.get_version(conn, "m", 1)
        assert record.archived_at is None
        removal.set_archived(conn, record.id, md.now())
    with db.read() as conn:
        assert md.get_version(conn, "m", 1).archived_at is not None


def test_deleting_a_deployment_removes_everything_that_hangs_off_it(db: Database) -> None:
    register(db, "m")
    deploy(db, "gone", RoutingConfig(champion=1))
    deploy(db, "kept", RoutingConfig(champion=1))
    with db.write() as conn:
        rollout = rs.insert_rollout(conn, deployment="gone", version=1, plan={}, step="bake",
                                    base_revision=1, actor="a")  # fmt: skip
        rs.add_event(conn, rollout, kind="started", detail={})
        rs.update_rollout(conn, rollout, state="succeeded")
        job = js.insert_job(conn, deployment="gone", model="m", parent_version=1,
                            trigger="manual", trigger_detail={}, spec={}, actor="a")  # fmt: skip
        assert removal.busy_deployment(conn, md.get_deployment(conn, "gone").id) == [
            f"job {job.id} is not finished"
        ]
        conn.execute(schema.jobs.update().values(state="succeeded"))
        before = md.routing_fingerprint(conn)
    with db.write() as conn:
        assert removal.busy_deployment(conn, md.get_deployment(conn, "gone").id) == []
        removal.delete_deployment(conn, md.get_deployment(conn, "gone").id)
    with db.read() as conn:
        assert md.find_deployment(conn, "gone") is None
        assert [d.name for d, _ in md.active_revisions(conn)] == ["kept"]
        assert md.routing_fingerprint(conn) != before
        for table in (schema.rollouts, schema.rollout_events, schema.jobs):
            assert conn.execute(select(func.count()).select_from(table)).scalar() == 0
        assert conn.execute(select(func.count()).select_from(schema.revisions)).scalar() == 1


def test_deleting_a_model_removes_its_versions_only(db: Database) -> None:
    register(db, "m")
    register(db, "m")
    register(db, "other")
    with db.write() as conn:
        assert removal.deployments_of_model(conn, md.get_model(conn, "m").id) == []
        removal.delete_model(conn, md.get_model(conn, "m").id)
    with db.read() as conn:
        assert md.find_model(conn, "m") is None
        assert [m.name for m, _, _ in md.list_models(conn)] == ["other"]
        assert md.find_version(conn, "other", 1) is not None
