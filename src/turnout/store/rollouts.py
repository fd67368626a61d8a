"""Rollouts and their event history, in SQLAlchemy Core; callers own the transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Row, insert, select, update

from turnout.errors import Conflict, NotFound
from turnout.store import schema as t
from turnout.store.clock import aware, now
from turnout.store.deployments import get_deployment
from turnout.store.records import ACTIVE_ROLLOUT_STATES, RolloutRecord, RolloutState
from turnout.types import JSON

_ACTIVE = [state.value for state in ACTIVE_ROLLOUT_STATES]


def _rollout(row: Row[Any]) -> RolloutRecord:
    return RolloutRecord(
        id=row.id,
        deployment=row.deployment,
        version=row.version,
        plan=row.plan,
        state=RolloutState(row.state),
        step=row.step,
        step_started_at=aware(row.step_started_at),
        base_revision=row.base_revision,
        state_detail=row.state_detail or {},
        reason=row.reason or "",
        created_by=row.created_by,
        created_at=aware(row.created_at),
        updated_at=aware(row.updated_at),
        finished_at=aware(row.finished_at) if row.finished_at is not None else None,
    )


def _query() -> Any:
    return select(t.rollouts, t.deployments.c.name.label("deployment")).join(
        t.deployments, t.rollouts.c.deployment_id == t.deployments.c.id
    )


def insert_rollout(
    conn: Connection,
    *,
    deployment: str,
    version: int,
    plan: dict[str, JSON],
    step: str,
    base_revision: int,
    actor: str,
) -> RolloutRecord:
    record = get_deployment(conn, deployment)
    at = now()
    result = conn.execute(
        insert(t.rollouts).values(
            deployment_id=record.id, version=version, plan=plan,
            state=RolloutState.RUNNING.value, step=step, step_started_at=at,
            base_revision=base_revision, state_detail={}, reason="",
            created_by=actor, created_at=at, updated_at=at, finished_at=None,
        )
    )  # fmt: skip
    key = result.inserted_primary_key
    assert key is not None
    return get_rollout(conn, int(key[0]))


def get_rollout(conn: Connection, rollout_id: int) -> RolloutRecord:
    row = conn.execute(_query().where(t.rollouts.c.id == rollout_id)).first()
    if row is None:
        raise NotFound(f"rollout {rollout_id} not found")
    return _rollout(row)


def active_rollout(conn: Connection, deployment: str) -> RolloutRecord | None:
    row = conn.execute(
        _query()
        .where(t.deployments.c.name == deployment)
        .where(t.rollouts.c.state.in_(_ACTIVE))
        .order_by(t.rollouts.c.id.desc())
    ).first()
    return _rollout(row) if row is not None else None


def latest_rollout(conn: Connection, deployment: str) -> RolloutRecord | None:
    row = conn.execute(
        _query().where(t.deployments.c.name == deployment).order_by(t.rollouts.c.id.desc())
    ).first()
    return _rollout(row) if row is not None else None


def active_rollouts(conn: Connection) -> list[RolloutRecord]:
    rows = conn.execute(_query().where(t.rollouts.c.state.in_(_ACTIVE)).order_by(t.rollouts.c.id))
    return [_rollout(r) for r in rows]


def update_rollout(
    conn: Connection,
    rollout: RolloutRecord,
    *,
    expect_step: str | None = None,
    **values: Any,
) -> RolloutRecord:
    """Change a rollout, only if it is still at `expect_step` (default: its step as read)
    and in the state read: a second controller, or a retried look, can never apply the same
    move twice. Which state moves are allowed is `Rollouts`' business, not the store's."""
    expected = rollout.step if expect_step is None else expect_step
    values["updated_at"] = now()
    if values.get("state") is not None:
        values["state"] = RolloutState(values["state"]).value
    if "step" in values and values["step"] != rollout.step:
        values.setdefault("step_started_at", values["updated_at"])
    if values.get("state") is not None and values["state"] not in ACTIVE_ROLLOUT_STATES:
        values.setdefault("finished_at", values["updated_at"])
    done = conn.execute(
        update(t.rollouts)
        .where(t.rollouts.c.id == rollout.id)
        .where(t.rollouts.c.step == expected)
        .where(t.rollouts.c.state == rollout.state.value)
        .values(**values)
    )
    if done.rowcount != 1:
        raise Conflict(f"rollout {rollout.id} changed meanwhile; nothing was applied")
    return get_rollout(conn, rollout.id)


def add_event(
    conn: Connection, rollout: RolloutRecord, *, kind: str, detail: dict[str, JSON], step: str = ""
) -> None:
    conn.execute(
        insert(t.rollout_events).values(
            rollout_id=rollout.id, at=now(), step=step or rollout.step, kind=kind, detail=detail
        )
    )


def list_events(conn: Connection, rollout: RolloutRecord) -> list[dict[str, JSON]]:
    rows = conn.execute(
        select(t.rollout_events)
        .where(t.rollout_events.c.rollout_id == rollout.id)
        .order_by(t.rollout_events.c.id)
    )
    return [
        {"at": aware(r.at).isoformat(), "step": r.step, "kind": r.kind, "detail": r.detail}
        for r in rows
    ]


def deployment_events(
    conn: Connection, deployment: str, *, limit: int = 1000
) -> list[dict[str, JSON]]:
    """Every rollout event of a deployment, oldest first (the newest `limit`), each with its
    rollout's id and version: the steps and verdicts of the deployment's history."""
    rows = conn.execute(
        select(t.rollout_events, t.rollouts.c.version)
        .join(t.rollouts, t.rollouts.c.id == t.rollout_events.c.rollout_id)
        .join(t.deployments, t.deployments.c.id == t.rollouts.c.deployment_id)
        .where(t.deployments.c.name == deployment)
        .order_by(t.rollout_events.c.id.desc())
        .limit(limit)
    ).all()
    return [
        {"at": aware(r.at).isoformat(), "rollout": r.rollout_id, "version": r.version,
         "step": r.step, "kind": r.kind, "detail": r.detail}
        for r in reversed(rows)
    ]  # fmt: skip
