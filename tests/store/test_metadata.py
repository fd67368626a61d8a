"""The metadata store behaves the same on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import inspect, select

from turnout.errors import Conflict, NotFound
from turnout.store import metadata as md
from turnout.store import schema
from turnout.store.db import Database
from turnout.store.records import RoutingConfig, TokenRole

ARTIFACT = {"kind": "file", "files": [{"path": "m.joblib", "sha256": "0" * 64, "size": 1}]}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'turnout.db'}"
    else:
        url = request.getfixturevalue("pg_url")
    database = Database.from_url(url)
    database.migrate()
    yield database
    database.dispose()


def version_values(flavor: str = "sklearn") -> dict[str, object]:
    return {
        "flavor": flavor,
        "description": "",
        "artifact": ARTIFACT,
        "signature": {"inputs": [{"name": "x", "datatype": "FP64"}]},
        "metrics": {"accuracy": 0.9},
        "params": {"C": "1.0"},
        "tags": {},
        "training": None,
        "parent_version": None,
        "lineage": {},
        "created_by": "test",
    }


def register(db: Database, name: str) -> int:
    with db.write() as conn:
        model = md.lock_or_create_model(conn, name)
        number = md.next_version_number(conn, model)
        md.insert_version(conn, model, number, version_values())
        return number


def test_migrations_create_every_table_and_are_idempotent(db: Database) -> None:
    db.migrate()
    tables = set(inspect(db.engine).get_table_names())
    assert set(schema.metadata.tables) <= tables
    assert "alembic_version" in tables
    with db.engine.connect() as conn:
        assert Database.current_revision(conn) == Database.head_revision()


def test_versions_number_per_model(db: Database) -> None:
    assert [register(db, "a") for _ in range(3)] == [1, 2, 3]
    assert register(db, "b") == 1
    with db.read() as conn:
        versions = md.list_versions(conn, "a")
        models = md.list_models(conn)
    assert [v.version for v in versions] == [1, 2, 3]
    assert versions[0].metrics == {"accuracy": 0.9}
    assert versions[0].artifact.files[0].path == "m.joblib"
    assert [(m.name, n, latest) for m, n, latest in models] == [("a", 3, 3), ("b", 1, 1)]


def test_concurrent_registration_is_gap_free(db: Database) -> None:
    numbers: list[int] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        try:
            for _ in range(3):
                numbers.append(register(db, "race"))
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(numbers) == list(range(1, 25))


def test_failed_transaction_leaves_nothing(db: Database) -> None:
    def crash_mid_registration() -> None:
        with db.write() as conn:
            model = md.lock_or_create_model(conn, "half")
            md.insert_version(conn, model, 1, version_values())
            raise RuntimeError("crash mid-registration")

    with pytest.raises(RuntimeError, match="crash"):
        crash_mid_registration()
    with db.read() as conn:
        assert md.find_model(conn, "half") is None
        assert conn.execute(select(schema.versions)).first() is None


def test_missing_things_are_not_found(db: Database) -> None:
    register(db, "m")
    with db.read() as conn:
        with pytest.raises(NotFound, match="model 'nope' not found"):
            md.get_version(conn, "nope", 1)
        with pytest.raises(NotFound, match="version m:7 not found"):
            md.get_version(conn, "m", 7)
        with pytest.raises(NotFound, match="deployment 'd' not found"):
            md.get_deployment(conn, "d")


def test_revisions_append_and_activate(db: Database) -> None:
    register(db, "m")
    register(db, "m")
    with db.write() as conn:
        deployment = md.insert_deployment(conn, "m-prod", md.get_model(conn, "m"))
        md.add_revision(conn, deployment, RoutingConfig(champion=1), reason="create", actor="t")
    with db.read() as conn:
        before = md.routing_fingerprint(conn)
    with db.write() as conn:
        deployment = md.get_deployment(conn, "m-prod")
        config = RoutingConfig(champion=2, timeout_ms=50, fallback=0, has_fallback=True)
        md.add_revision(conn, deployment, config, reason="promote", actor="t")
    with db.read() as conn:
        deployment = md.get_deployment(conn, "m-prod")
        history = md.list_revisions(conn, deployment)
        active = md.active_revisions(conn)
        after = md.routing_fingerprint(conn)
    assert deployment.active_revision == 2
    assert [r.revision for r in history] == [1, 2]
    assert [r.reason for r in history] == ["create", "promote"]
    assert history[1].config == RoutingConfig(
        champion=2, timeout_ms=50, fallback=0, has_fallback=True
    )
    assert [(d.name, r.revision, r.config.champion) for d, r in active] == [("m-prod", 2, 2)]
    assert after != before


def test_deployment_names_are_unique(db: Database) -> None:
    register(db, "m")
    with db.write() as conn:
        md.insert_deployment(conn, "dup", md.get_model(conn, "m"))
    with pytest.raises(Conflict, match="already exists"), db.write() as conn:
        md.insert_deployment(conn, "dup", md.get_model(conn, "m"))


def test_tokens_store_hashes_and_revoke(db: Database) -> None:
    with db.write() as conn:
        token = md.insert_token(conn, name="ci", role=TokenRole.DEPLOYER, token_hash="a" * 64)
    with db.read() as conn:
        found = md.find_token(conn, "a" * 64)
    assert found is not None
    assert found.role is TokenRole.DEPLOYER
    with db.write() as conn:
        md.revoke_token(conn, token.id)
    with db.read() as conn:
        assert md.find_token(conn, "a" * 64) is None
    with pytest.raises(NotFound), db.write() as conn:
        md.revoke_token(conn, token.id)


def test_audit_log_keeps_every_entry(db: Database) -> None:
    with db.write() as conn:
        md.audit(conn, actor="a", action="x.create", target="dep/1", detail={"n": 1})
        md.audit(conn, actor="b", action="x.update", target="dep/2", detail={})
    with db.read() as conn:
        entries = md.list_audit(conn)
    assert [(e["actor"], e["action"]) for e in entries] == [("a", "x.create"), ("b", "x.update")]


def test_deployments_are_listed_a_page_at_a_time_in_name_order(db: Database) -> None:
    register(db, "m")
    with db.write() as conn:
        model = md.get_model(conn, "m")
        for name in ["b-2", "a_1", "b-1", "a%1", "c"]:
            deployment = md.insert_deployment(conn, name, model)
            md.add_revision(conn, deployment, RoutingConfig(champion=1), reason="t", actor="t")
    with db.read() as conn:
        first = md.active_revisions(conn, limit=2)
        second = md.active_revisions(conn, limit=2, offset=2)
        b = md.active_revisions(conn, limit=10, prefix="b-")
        literal = md.active_revisions(conn, limit=10, prefix="a%")  # no wildcard: the name
        assert md.count_deployments(conn) == 5
        assert md.count_deployments(conn, prefix="b-") == 2
    assert [d.name for d, _ in first + second] == ["a%1", "a_1", "b-1", "b-2"]
    assert [d.name for d, _ in b] == ["b-1", "b-2"]
    assert [d.name for d, _ in literal] == ["a%1"]


def test_a_heartbeat_without_counters_keeps_the_stored_ones(db: Database) -> None:
    beat = {
        "worker_id": "w1",
        "host": "h",
        "pid": 1,
        "started_at": md.now(),
        "revisions": {"d": 1},
        "errors": {},
    }
    counters = [{"deployment": "d", "version": 1, "role": "champion", "requests": 3}]
    with db.write() as conn:
        md.report_worker(conn, stats=None, **beat)  # a first beat before any traffic
        md.report_worker(conn, stats=counters, **beat)
        md.report_worker(conn, stats=None, **{**beat, "revisions": {"d": 2}})
    with db.read() as conn:
        (full,) = md.list_workers(conn)
        (light,) = md.list_workers(conn, light=True)
    assert full.stats == counters
    assert full.revisions == light.revisions == {"d": 2}
    assert light.stats == []
