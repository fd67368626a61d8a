"""Which state a rollout or a retrain job may move to from which: the two state machines
of the control plane, each read in one table. `Rollouts` owns every rollout write and
`retrain.ledger` every job write; both check their moves here."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from turnout.errors import Conflict
from turnout.store.records import JobState, RolloutState

R, J = RolloutState, JobState

ROLLOUT_MOVES: Mapping[RolloutState, frozenset[RolloutState]] = {
    R.RUNNING: frozenset(
        {
            R.RUNNING,
            R.WAITING_APPROVAL,
            R.SUCCEEDED,
            R.FAILED,
            R.ABORTED,
            R.SUPERSEDED,
            R.ROLLED_BACK,
        }
    ),
    R.WAITING_APPROVAL: frozenset({R.WAITING_APPROVAL, R.RUNNING, R.ABORTED, R.SUPERSEDED}),
    R.SUCCEEDED: frozenset(),
    R.FAILED: frozenset(),
    R.ABORTED: frozenset(),
    R.SUPERSEDED: frozenset(),
    R.ROLLED_BACK: frozenset(),
}
"""running -> the next step (running), a human's approval, or an end; waiting for approval
-> running again once approved, or ended by an abort or a newer rollout. Ends are final."""

JOB_MOVES: Mapping[JobState, frozenset[JobState]] = {
    J.QUEUED: frozenset({J.QUEUED, J.RUNNING, J.FAILED, J.CANCELLED}),
    J.RUNNING: frozenset({J.RUNNING, J.SUCCEEDED, J.FAILED, J.CANCELLED}),
    J.SUCCEEDED: frozenset(),
    J.FAILED: frozenset(),
    J.CANCELLED: frozenset(),
}
"""queued -> launched (still queued until its process claims it), running, or ended before
it ran; running -> progress (running) or an end. Ends are final."""


class IllegalTransition(Conflict):
    """A move the state machine does not have, e.g. a finished rollout made to run again."""


def check_rollout_move(rollout_id: int, current: str, wanted: str) -> RolloutState:
    """`wanted` as a state, when a rollout in `current` may move there."""
    return _check(ROLLOUT_MOVES, f"rollout {rollout_id}", RolloutState(current), wanted)


def check_job_move(job_id: int, current: str, wanted: str) -> JobState:
    """`wanted` as a state, when a job in `current` may move there."""
    return _check(JOB_MOVES, f"job {job_id}", JobState(current), wanted)


S = TypeVar("S", RolloutState, JobState)


def _check(table: Mapping[S, frozenset[S]], what: str, current: S, wanted: str) -> S:
    target = type(current)(wanted)
    if target not in table[current]:
        allowed = ", ".join(sorted(table[current])) or "nothing: it is finished"
        raise IllegalTransition(
            f"{what} cannot move from {current} to {target} (from {current}: {allowed})"
        )
    return target
