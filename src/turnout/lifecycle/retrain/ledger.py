"""Every write to a retrain job's row, in one place: the service creates and cancels jobs,
the supervisor (`executor.py`) launches and ends them, the job's own process (`job.py`)
claims, advances and finishes them. Each state move is checked against
`transitions.JOB_MOVES` and is a compare-and-set on the state that was read, so two writers
never both move a job. Callers own the transaction."""

from __future__ import annotations

import os
import socket
from typing import Any

from sqlalchemy import Connection

from turnout.errors import Conflict
from turnout.lifecycle.transitions import check_job_move
from turnout.store import jobs as js
from turnout.store.clock import now
from turnout.store.records import JobRecord, JobState
from turnout.types import JSON

CANCELLED_BY_REQUEST = "cancelled by request"


def _move(conn: Connection, job: JobRecord, to: JobState | None = None, **values: Any) -> JobRecord:
    """Write `values` (and the move to `to`) if the job is still as read; Conflict if not."""
    if to is not None:
        values["state"] = check_job_move(job.id, job.state, to)
    return js.update_job(conn, job, **values)


# -- the service ----------------------------------------------------------------------------


def create(conn: Connection, **fields: Any) -> JobRecord:
    """A queued job (`store.jobs.insert_job`'s fields); Conflict when one is active."""
    return js.insert_job(conn, **fields)


def request_cancel(conn: Connection, job_id: int) -> JobRecord:
    """Mark an active job for cancellation; a queued one is cancelled at once."""
    job = js.get_job(conn, job_id)
    if not job.active:
        raise Conflict(f"job {job_id} already {job.state}")
    if job.state == JobState.QUEUED:
        return _move(conn, job, JobState.CANCELLED, message="cancelled before it started",
                     cancel_requested=True)  # fmt: skip
    return _move(conn, job, cancel_requested=True)


def note_result(conn: Connection, job: JobRecord, result: dict[str, JSON]) -> JobRecord:
    """Add to a finished job's result (e.g. the rollout it was handed to)."""
    return _move(conn, job, result=result)


# -- the supervisor -------------------------------------------------------------------------


def stamp_launch(conn: Connection, job: JobRecord) -> JobRecord:
    """Mark a queued job launched, so no later pass launches it again."""
    return _move(conn, job, started_at=now(), message="starting")


def place(conn: Connection, job: JobRecord, *, host: str | None, pid: int | None) -> JobRecord:
    """Where the launched job runs (None: the executor does not say)."""
    return _move(conn, job, host=host, pid=pid)


def end(conn: Connection, job: JobRecord, state: JobState, message: str) -> JobRecord:
    """End the job as failed or cancelled, saying why."""
    return _move(conn, job, state, message=message)


# -- the job's own process ------------------------------------------------------------------


def claim(conn: Connection, job: JobRecord) -> JobRecord:
    """Mark a queued job running in this process."""
    moment = now()
    return _move(conn, job, JobState.RUNNING, host=socket.gethostname(), pid=os.getpid(),
                 started_at=moment, heartbeat_at=moment, progress=0.0,
                 message="starting")  # fmt: skip


def stage(conn: Connection, job: JobRecord, *, progress: float, message: str) -> JobRecord:
    """Record how far the job got, or cancel it here when a cancel was asked for."""
    if js.get_job(conn, job.id).cancel_requested:
        return _move(conn, job, JobState.CANCELLED, message=CANCELLED_BY_REQUEST)
    return _move(conn, job, progress=progress, message=message)


def beat(conn: Connection, job: JobRecord) -> JobRecord:
    return _move(conn, job, heartbeat_at=now())


def succeed(
    conn: Connection, job: JobRecord, *, message: str, result: dict[str, JSON]
) -> JobRecord:
    return _move(conn, job, JobState.SUCCEEDED, progress=1.0, message=message, result=result)
