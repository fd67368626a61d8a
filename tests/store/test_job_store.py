"""Retrain job records on SQLite and PostgreSQL: one active job per deployment, state moves
by compare-and-set, cancellation."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.store.test_metadata import register
from turnout.errors import Conflict, NotFound
from turnout.lifecycle.retrain import ledger
from turnout.store import jobs as js
from turnout.store import metadata as md
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
        for name in ("d", "e"):
            deployment = md.insert_deployment(conn, name, md.get_model(conn, "m"))
            md.add_revision(conn, deployment, RoutingConfig(champion=1), reason="create",
                            actor="t")  # fmt: skip
    yield database
    database.dispose()


def new_job(db: Database, deployment: str = "d", actor: str = "t") -> js.JobRecord:
    with db.write() as conn:
        return js.insert_job(conn, deployment=deployment, model="m", parent_version=1,
                             trigger="manual", trigger_detail={}, spec={"k": 1},
                             actor=actor)  # fmt: skip


def test_one_active_job_per_deployment(db: Database) -> None:
    first = new_job(db)
    assert (first.state, first.progress, first.spec) == ("queued", 0.0, {"k": 1})
    with pytest.raises(Conflict, match="one runs at a time"):
        new_job(db)
    assert new_job(db, "e").deployment == "e"  # another deployment is independent
    with db.write() as conn:
        running = js.update_job(conn, first, state="running")
        done = js.update_job(conn, running, state="succeeded", result={"version": 2})
    assert done.finished_at is not None
    assert done.result == {"version": 2}
    second = new_job(db)  # the first has finished
    with db.read() as conn:
        assert js.active_job(conn, "d") == second
        assert js.latest_job(conn, "d") == second
        assert [j.id for j in js.list_jobs(conn, deployment="d")] == [second.id, first.id]
        assert [j.id for j in js.list_jobs(conn, states=("succeeded",))] == [first.id]


def test_racing_triggers_start_one_job(db: Database) -> None:
    started: list[int] = []
    refused: list[str] = []
    barrier = threading.Barrier(4)

    def trigger(who: str) -> None:
        barrier.wait()
        try:
            started.append(new_job(db, actor=who).id)
        except Conflict as exc:
            refused.append(exc.message)

    threads = [threading.Thread(target=trigger, args=(f"t{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(started) == 1
    assert len(refused) == 3


def test_a_state_move_applies_once(db: Database) -> None:
    job = new_job(db)
    with db.write() as conn:
        js.update_job(conn, job, state="running")
    with db.write() as conn, pytest.raises(Conflict, match="no longer queued"):
        js.update_job(conn, job, state="running")  # read before the first move


def test_cancelling_a_queued_job_ends_it_and_a_running_one_is_marked(db: Database) -> None:
    queued = new_job(db)
    with db.write() as conn:
        cancelled = ledger.request_cancel(conn, queued.id)
    assert cancelled.state == "cancelled"
    running = new_job(db)
    with db.write() as conn:
        js.update_job(conn, running, state="running")
        marked = ledger.request_cancel(conn, running.id)
    assert (marked.state, marked.cancel_requested) == ("running", True)
    with db.write() as conn, pytest.raises(Conflict, match="already cancelled"):
        ledger.request_cancel(conn, queued.id)
    with db.read() as conn, pytest.raises(NotFound):
        js.get_job(conn, 12345)
