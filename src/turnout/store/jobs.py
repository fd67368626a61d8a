"""Jobs (retrain, batch scoring) in the metadata DB, in SQLAlchemy Core.

At most one job per deployment is queued or running: `insert_job` checks it under a lock of
the deployment's row, so two triggers (the controller's and a person's) never both start
one. State moves are compare-and-set on the state that was read, like rollout steps.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Row, insert, select, update

from turnout.errors import Conflict, NotFound
from turnout.store import schema as t
from turnout.store.clock import aware, now
from turnout.store.deployments import get_deployment
from turnout.store.records import ACTIVE_JOB_STATES, FINISHED_JOB_STATES, JobRecord, JobState
from turnout.types import JSON


def _job(row: Row[Any]) -> JobRecord:
    def when(value: Any) -> Any:
        return aware(value) if value is not None else None

    return JobRecord(
        id=row.id, kind=row.kind, deployment=row.deployment, model=row.model,
        parent_version=row.parent_version, trigger=row.trigger,
        trigger_detail=row.trigger_detail or {}, state=JobState(row.state), spec=row.spec or {},
        progress=float(row.progress), message=row.message or "", result=row.result or {},
        host=row.host, pid=row.pid, cancel_requested=bool(row.cancel_requested),
        created_by=row.created_by, created_at=aware(row.created_at),
        started_at=when(row.started_at), heartbeat_at=when(row.heartbeat_at),
        finished_at=when(row.finished_at),
    )  # fmt: skip


def _query() -> Any:
    return select(t.jobs, t.deployments.c.name.label("deployment")).join(
        t.deployments, t.jobs.c.deployment_id == t.deployments.c.id
    )


def insert_job(
    conn: Connection,
    *,
    deployment: str,
    model: str,
    parent_version: int,
    trigger: str,
    trigger_detail: dict[str, JSON],
    spec: dict[str, JSON],
    actor: str,
    kind: str = "retrain",
) -> JobRecord:
    """A queued job; Conflict when the deployment already has one queued or running."""
    record = get_deployment(conn, deployment)
    # serialise job creation per deployment (PostgreSQL: row lock; SQLite: the write lock)
    conn.execute(
        select(t.deployments.c.id).where(t.deployments.c.id == record.id).with_for_update()
    )
    running = active_job(conn, deployment)
    if running is not None:
        raise Conflict(
            f"deployment {deployment!r} already has {running.kind} job {running.id} "
            f"{running.state}; "
            "one runs at a time"
        )
    result = conn.execute(
        insert(t.jobs).values(
            kind=kind, deployment_id=record.id, model=model, parent_version=parent_version,
            trigger=trigger, trigger_detail=trigger_detail, state=JobState.QUEUED.value, spec=spec,
            progress=0.0, message="queued", result={}, host=None, pid=None,
            cancel_requested=False, created_by=actor, created_at=now(), started_at=None,
            heartbeat_at=None, finished_at=None,
        )
    )  # fmt: skip
    key = result.inserted_primary_key
    assert key is not None
    return get_job(conn, int(key[0]))


def get_job(conn: Connection, job_id: int) -> JobRecord:
    row = conn.execute(_query().where(t.jobs.c.id == job_id)).first()
    if row is None:
        raise NotFound(f"job {job_id} not found")
    return _job(row)


def active_job(conn: Connection, deployment: str) -> JobRecord | None:
    row = conn.execute(
        _query()
        .where(t.deployments.c.name == deployment)
        .where(t.jobs.c.state.in_([state.value for state in ACTIVE_JOB_STATES]))
        .order_by(t.jobs.c.id.desc())
    ).first()
    return _job(row) if row is not None else None


def latest_job(conn: Connection, deployment: str, kind: str = "retrain") -> JobRecord | None:
    """The deployment's newest job of `kind` (a retrain's cooldown counts retrains only)."""
    row = conn.execute(
        _query()
        .where(t.deployments.c.name == deployment)
        .where(t.jobs.c.kind == kind)
        .order_by(t.jobs.c.id.desc())
    ).first()
    return _job(row) if row is not None else None


def list_jobs(
    conn: Connection,
    *,
    deployment: str | None = None,
    states: tuple[str, ...] | None = None,
    limit: int = 100,
) -> list[JobRecord]:
    """Newest first."""
    query = _query()
    if deployment is not None:
        query = query.where(t.deployments.c.name == deployment)
    if states is not None:
        query = query.where(t.jobs.c.state.in_([JobState(state).value for state in states]))
    rows = conn.execute(query.order_by(t.jobs.c.id.desc()).limit(limit))
    return [_job(r) for r in rows]


def update_job(
    conn: Connection, job: JobRecord, *, expect_state: str | None = None, **values: Any
) -> JobRecord:
    """Change a job only if it is still in `expect_state` (default: its state as read);
    Conflict otherwise. Leaving an active state stamps `finished_at`. Which state moves are
    allowed is `lifecycle.retrain.ledger`'s business, not the store's."""
    expected = JobState(job.state if expect_state is None else expect_state).value
    if values.get("state") is not None:
        values["state"] = JobState(values["state"]).value
    if values.get("state") in FINISHED_JOB_STATES:
        values.setdefault("finished_at", now())
    done = conn.execute(
        update(t.jobs)
        .where(t.jobs.c.id == job.id)
        .where(t.jobs.c.state == expected)
        .values(**values)
    )
    if done.rowcount != 1:
        raise Conflict(f"job {job.id} is no longer {expected}")
    return get_job(conn, job.id)
