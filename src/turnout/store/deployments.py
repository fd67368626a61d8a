"""Deployments, their revisions and the documents kept beside them (rollout plan, retrain
policy and state) in the metadata DB; callers own the transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, func, insert, select, update

from turnout.errors import Conflict, NotFound
from turnout.store import schema as t
from turnout.store.clock import aware, now
from turnout.store.records import DeploymentRecord, ModelRecord, RevisionRecord, RoutingConfig
from turnout.types import JSON


def _deployment(row: Row[Any]) -> DeploymentRecord:
    return DeploymentRecord(
        id=row.id,
        name=row.name,
        model=row.model_name,
        active_revision=row.active_revision,
        created_at=aware(row.created_at),
        updated_at=aware(row.updated_at),
    )


def _deployments_query() -> Any:
    return select(t.deployments, t.models.c.name.label("model_name")).join(
        t.models, t.models.c.id == t.deployments.c.model_id
    )


def find_deployment(conn: Connection, name: str) -> DeploymentRecord | None:
    row = conn.execute(_deployments_query().where(t.deployments.c.name == name)).first()
    return _deployment(row) if row else None


def get_deployment(conn: Connection, name: str) -> DeploymentRecord:
    record = find_deployment(conn, name)
    if record is None:
        raise NotFound(f"deployment {name!r} not found")
    return record


def list_deployments(conn: Connection) -> list[DeploymentRecord]:
    rows = conn.execute(_deployments_query().order_by(t.deployments.c.name))
    return [_deployment(r) for r in rows]


def insert_deployment(conn: Connection, name: str, model: ModelRecord) -> DeploymentRecord:
    if find_deployment(conn, name) is not None:
        raise Conflict(f"deployment {name!r} already exists")
    stamp = now()
    conn.execute(
        insert(t.deployments).values(
            name=name, model_id=model.id, active_revision=0, created_at=stamp, updated_at=stamp
        )
    )
    return get_deployment(conn, name)


def add_revision(
    conn: Connection,
    deployment: DeploymentRecord,
    config: RoutingConfig,
    *,
    reason: str,
    actor: str,
) -> RevisionRecord:
    """Append revision N+1 and make it the active one."""
    latest = conn.execute(
        select(func.max(t.revisions.c.revision)).where(t.revisions.c.deployment_id == deployment.id)
    ).scalar()
    number = int(latest or 0) + 1
    stamp = now()
    conn.execute(
        insert(t.revisions).values(
            deployment_id=deployment.id,
            revision=number,
            config=config.to_dict(),
            reason=reason,
            created_by=actor,
            created_at=stamp,
        )
    )
    conn.execute(
        update(t.deployments)
        .where(t.deployments.c.id == deployment.id)
        .values(active_revision=number, updated_at=stamp)
    )
    return RevisionRecord(deployment.name, number, config, reason, actor, stamp)


def _set_document(conn: Connection, name: str, column: str, value: JSON) -> None:
    """Store one of a deployment's JSON documents (plan, policy, state); NotFound if the
    deployment does not exist."""
    get_deployment(conn, name)
    conn.execute(update(t.deployments).where(t.deployments.c.name == name).values({column: value}))


def _get_document(conn: Connection, name: str, column: str) -> dict[str, JSON] | None:
    value: dict[str, JSON] | None = conn.execute(
        select(t.deployments.c[column]).where(t.deployments.c.name == name)
    ).scalar_one_or_none()
    if value is None:
        get_deployment(conn, name)  # NotFound, or the deployment has none
    return value


def set_rollout_plan(conn: Connection, name: str, plan: dict[str, JSON] | None) -> None:
    """The plan a rollout of this deployment follows when it is started without one."""
    _set_document(conn, name, "rollout_plan", plan)


def get_rollout_plan(conn: Connection, name: str) -> dict[str, JSON] | None:
    return _get_document(conn, name, "rollout_plan")


def set_retrain_policy(conn: Connection, name: str, policy: dict[str, JSON] | None) -> None:
    """When and how the deployment's champion is retrained; None removes the policy."""
    _set_document(conn, name, "retrain_policy", policy)


def get_retrain_policy(conn: Connection, name: str) -> dict[str, JSON] | None:
    return _get_document(conn, name, "retrain_policy")


def retrain_policies(conn: Connection) -> list[tuple[str, dict[str, JSON], dict[str, JSON]]]:
    """(deployment, policy, trigger state) of every deployment with a retrain policy."""
    rows = conn.execute(
        select(t.deployments.c.name, t.deployments.c.retrain_policy, t.deployments.c.retrain_state)
        .where(t.deployments.c.retrain_policy.is_not(None))
        .order_by(t.deployments.c.name)
    )
    return [(r.name, r.retrain_policy, r.retrain_state or {}) for r in rows if r.retrain_policy]


def get_deployment_retrain_state(conn: Connection, name: str) -> dict[str, JSON] | None:
    return _get_document(conn, name, "retrain_state")


def set_retrain_state(conn: Connection, name: str, state: dict[str, JSON]) -> None:
    """What the trigger checks keep between looks (when they last looked, and saw)."""
    _set_document(conn, name, "retrain_state", state)


def _revision(row: Row[Any], deployment: str) -> RevisionRecord:
    return RevisionRecord(
        deployment=deployment,
        revision=row.revision,
        config=RoutingConfig.from_dict(row.config),
        reason=row.reason,
        created_by=row.created_by,
        created_at=aware(row.created_at),
    )


def get_revision(conn: Connection, deployment: DeploymentRecord, revision: int) -> RevisionRecord:
    row = conn.execute(
        select(t.revisions).where(
            t.revisions.c.deployment_id == deployment.id, t.revisions.c.revision == revision
        )
    ).first()
    if row is None:
        raise NotFound(f"revision {revision} of deployment {deployment.name!r} not found")
    return _revision(row, deployment.name)


def list_revisions(conn: Connection, deployment: DeploymentRecord) -> list[RevisionRecord]:
    rows = conn.execute(
        select(t.revisions)
        .where(t.revisions.c.deployment_id == deployment.id)
        .order_by(t.revisions.c.revision)
    )
    return [_revision(r, deployment.name) for r in rows]


def active_revisions(
    conn: Connection,
    since: datetime | None = None,
    *,
    limit: int | None = None,
    offset: int = 0,
    prefix: str = "",
) -> list[tuple[DeploymentRecord, RevisionRecord]]:
    """Every deployment (changed `since`, named `prefix...`, one page of them, when given)
    with its active revision, in one query: what a gateway serves."""
    query = (
        _deployments_query()
        .add_columns(
            t.revisions.c.revision,
            t.revisions.c.config,
            t.revisions.c.reason,
            t.revisions.c.created_by.label("rev_by"),
            t.revisions.c.created_at.label("rev_at"),
        )
        .join(
            t.revisions,
            (t.revisions.c.deployment_id == t.deployments.c.id)
            & (t.revisions.c.revision == t.deployments.c.active_revision),
        )
    )
    if since is not None:
        query = query.where(t.deployments.c.updated_at >= since)
    if prefix:
        query = query.where(t.deployments.c.name.startswith(prefix, autoescape=True))
    if limit is not None:
        query = query.order_by(t.deployments.c.name).limit(limit).offset(offset)
    result = []
    for row in conn.execute(query):
        deployment = _deployment(row)
        revision = RevisionRecord(
            deployment=deployment.name,
            revision=row.revision,
            config=RoutingConfig.from_dict(row.config),
            reason=row.reason,
            created_by=row.rev_by,
            created_at=aware(row.rev_at),
        )
        result.append((deployment, revision))
    return result


def count_deployments(conn: Connection, *, prefix: str = "") -> int:
    query = select(func.count()).select_from(t.deployments)
    if prefix:
        query = query.where(t.deployments.c.name.startswith(prefix, autoescape=True))
    return int(conn.execute(query).scalar_one())


def routing_fingerprint(conn: Connection) -> tuple[int, int, int, float]:
    """Changes with every routing change anywhere; gateways poll it to know when to reload.

    Active revision numbers only grow, so their sum moves on every change, whatever order
    concurrent transactions commit in (a max over serial ids could miss a late commit). The
    newest change time tells a deleted deployment from a new one that took its id (SQLite
    reuses the highest id) with the same revision number.
    """
    row = conn.execute(
        select(
            func.count(),
            func.coalesce(func.sum(t.deployments.c.active_revision), 0),
            func.coalesce(func.max(t.deployments.c.id), 0),
            func.max(t.deployments.c.updated_at),
        )
    ).one()
    newest = aware(row[3]).timestamp() if row[3] is not None else 0.0
    return int(row[0]), int(row[1]), int(row[2]), newest
