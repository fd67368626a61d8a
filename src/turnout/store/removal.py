"""Archiving and deleting versions, models and deployments: what still uses them, and the
rows to remove. Callers own the transaction and decide what is refused."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, delete, select, update

from turnout.store import schema as t
from turnout.store.records import ACTIVE_JOB_STATES, ACTIVE_ROLLOUT_STATES, RoutingConfig


def users_of_versions(conn: Connection, model_id: int) -> dict[int, list[str]]:
    """Version -> what needs it now: deployments whose active revision routes it (in any
    role) and deployments with a rollout of it in progress."""
    users: dict[int, list[str]] = {}
    routed = conn.execute(
        select(t.deployments.c.name, t.revisions.c.config)
        .join(
            t.revisions,
            (t.revisions.c.deployment_id == t.deployments.c.id)
            & (t.revisions.c.revision == t.deployments.c.active_revision),
        )
        .where(t.deployments.c.model_id == model_id)
    )
    for name, config in routed:
        for version in RoutingConfig.from_dict(config).versions():
            users.setdefault(version, []).append(f"deployment {name!r}")
    for version, rollouts in rolled_out_versions(conn, model_id).items():
        users.setdefault(version, []).extend(rollouts)
    return users


def rolled_out_versions(conn: Connection, model_id: int) -> dict[int, list[str]]:
    """Version -> the rollouts in progress that carry it into production."""
    users: dict[int, list[str]] = {}
    rolling = conn.execute(
        select(t.deployments.c.name, t.rollouts.c.version)
        .join(t.rollouts, t.rollouts.c.deployment_id == t.deployments.c.id)
        .where(
            t.deployments.c.model_id == model_id,
            t.rollouts.c.state.in_([state.value for state in ACTIVE_ROLLOUT_STATES]),
        )
    )
    for name, version in rolling:
        users.setdefault(version, []).append(f"the rollout of {name!r}")
    return users


def deployments_of_model(conn: Connection, model_id: int) -> list[str]:
    rows = conn.execute(
        select(t.deployments.c.name)
        .where(t.deployments.c.model_id == model_id)
        .order_by(t.deployments.c.name)
    )
    return [r.name for r in rows]


def busy_deployment(conn: Connection, deployment_id: int) -> list[str]:
    """What is still under way for a deployment: an active rollout, unfinished jobs."""
    busy = []
    rollout = conn.execute(
        select(t.rollouts.c.id).where(
            t.rollouts.c.deployment_id == deployment_id,
            t.rollouts.c.state.in_([state.value for state in ACTIVE_ROLLOUT_STATES]),
        )
    ).first()
    if rollout is not None:
        busy.append(f"rollout {rollout.id} is in progress")
    jobs = conn.execute(
        select(t.jobs.c.id).where(
            t.jobs.c.deployment_id == deployment_id,
            t.jobs.c.state.in_([state.value for state in ACTIVE_JOB_STATES]),
        )
    ).all()
    busy += [f"job {j.id} is not finished" for j in jobs]
    return busy


def set_archived(conn: Connection, version_id: int, at: datetime | None) -> None:
    conn.execute(update(t.versions).where(t.versions.c.id == version_id).values(archived_at=at))


def delete_version(conn: Connection, version_id: int) -> None:
    conn.execute(delete(t.versions).where(t.versions.c.id == version_id))


def delete_model(conn: Connection, model_id: int) -> None:
    conn.execute(delete(t.versions).where(t.versions.c.model_id == model_id))
    conn.execute(delete(t.models).where(t.models.c.id == model_id))


def delete_deployment(conn: Connection, deployment_id: int) -> None:
    """The deployment and everything that hangs off it (revisions, rollouts and their
    events, finished jobs); the audit log keeps what happened."""
    rollouts = select(t.rollouts.c.id).where(t.rollouts.c.deployment_id == deployment_id)
    conn.execute(delete(t.rollout_events).where(t.rollout_events.c.rollout_id.in_(rollouts)))
    for table in (t.rollouts, t.jobs, t.revisions):
        conn.execute(delete(table).where(table.c.deployment_id == deployment_id))
    conn.execute(delete(t.deployments).where(t.deployments.c.id == deployment_id))
