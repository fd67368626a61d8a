"""The rollout and job state machines: every state has its row, ends are final, and an
illegal move is refused with a clear error before anything is written."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.store.test_metadata import register
from turnout.errors import Conflict
from turnout.lifecycle.retrain import ledger
from turnout.lifecycle.rollouts import Rollouts
from turnout.lifecycle.transitions import (
    JOB_MOVES,
    ROLLOUT_MOVES,
    IllegalTransition,
    check_job_move,
    check_rollout_move,
)
from turnout.store import jobs as js
from turnout.store import metadata as md
from turnout.store import rollouts as rs
from turnout.store.db import Database
from turnout.store.records import (
    ACTIVE_JOB_STATES,
    ACTIVE_ROLLOUT_STATES,
    JobState,
    RolloutState,
    RoutingConfig,
)


def test_every_state_has_a_row_and_only_active_states_move() -> None:
    assert set(ROLLOUT_MOVES) == set(RolloutState)
    assert set(JOB_MOVES) == set(JobState)
    assert {s for s, moves in ROLLOUT_MOVES.items() if moves} == set(ACTIVE_ROLLOUT_STATES)
    assert {s for s, moves in JOB_MOVES.items() if moves} == set(ACTIVE_JOB_STATES)


@pytest.mark.parametrize("end", [s for s in RolloutState if s not in ACTIVE_ROLLOUT_STATES])
def test_a_finished_rollout_never_runs_again(end: RolloutState) -> None:
    with pytest.raises(IllegalTransition, match=f"rollout 7 cannot move from {end} to running"):
        check_rollout_move(7, end, "running")


def test_an_approval_wait_cannot_succeed_without_running_again() -> None:
    with pytest.raises(IllegalTransition, match="from waiting_approval to succeeded"):
        check_rollout_move(1, "waiting_approval", "succeeded")
    assert check_rollout_move(1, "waiting_approval", "running") is RolloutState.RUNNING


def test_an_illegal_move_is_a_conflict() -> None:
    error = IllegalTransition("x")
    assert isinstance(error, Conflict)
    assert error.status == 409


def test_a_queued_job_cannot_succeed_before_it_runs() -> None:
    with pytest.raises(IllegalTransition, match="job 3 cannot move from queued to succeeded"):
        check_job_move(3, "queued", "succeeded")
    assert check_job_move(3, "queued", "running") is JobState.RUNNING


def test_unknown_states_are_refused() -> None:
    with pytest.raises(ValueError, match="'paused' is not a valid RolloutState"):
        check_rollout_move(1, "running", "paused")


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database.from_url(f"sqlite:///{tmp_path / 'turnout.db'}")
    database.migrate()
    register(database, "m")
    with database.write() as conn:
        deployment = md.insert_deployment(conn, "d", md.get_model(conn, "m"))
        md.add_revision(conn, deployment, RoutingConfig(champion=1), reason="create", actor="t")
    yield database
    database.dispose()


def test_the_ledger_refuses_to_end_a_finished_job_and_writes_nothing(db: Database) -> None:
    with db.write() as conn:
        job = ledger.create(conn, deployment="d", model="m", parent_version=1,
                            trigger="manual", trigger_detail={}, spec={}, actor="t")  # fmt: skip
        running = ledger.claim(conn, job)
        done = ledger.succeed(conn, running, message="registered m:2", result={"version": 2})
    assert (running.state, done.state) == (JobState.RUNNING, JobState.SUCCEEDED)
    with db.write() as conn, pytest.raises(IllegalTransition, match="from succeeded to failed"):
        ledger.end(conn, done, JobState.FAILED, "too late")
    with db.read() as conn:
        assert js.get_job(conn, job.id).message == "registered m:2"


def test_a_finished_rollout_is_not_moved_again_and_nothing_is_written(db: Database) -> None:
    with db.write() as conn:
        rollout = rs.insert_rollout(conn, deployment="d", version=2, plan={}, step="bake",
                                    base_revision=1, actor="t")  # fmt: skip
        done = Rollouts._write(conn, rollout, state=RolloutState.SUCCEEDED, reason="baked")
    assert (done.state, done.active) == (RolloutState.SUCCEEDED, False)
    with db.write() as conn, pytest.raises(IllegalTransition, match="from succeeded to aborted"):
        Rollouts._write(conn, done, state=RolloutState.ABORTED, reason="too late")
    with db.read() as conn:
        assert rs.get_rollout(conn, rollout.id).reason == "baked"
