"""Reads and writes of the metadata DB, returning records; callers own the transaction."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Row, delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from turnout.errors import Conflict, NotFound
from turnout.store import schema as t
from turnout.store.records import (
    Artifact,
    DeploymentRecord,
    ModelRecord,
    Permission,
    RevisionRecord,
    RoutingConfig,
    TokenRecord,
    TokenRole,
    VersionRecord,
    WorkerRecord,
)
from turnout.types import JSON


def now() -> datetime:
    return datetime.now(UTC)


def aware(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything turnout stores is UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


# -- models -------------------------------------------------------------------------------


def _model(row: Row[Any]) -> ModelRecord:
    return ModelRecord(row.id, row.name, row.description, aware(row.created_at))


def find_model(conn: Connection, name: str) -> ModelRecord | None:
    row = conn.execute(select(t.models).where(t.models.c.name == name)).first()
    return _model(row) if row else None


def get_model(conn: Connection, name: str) -> ModelRecord:
    model = find_model(conn, name)
    if model is None:
        raise NotFound(f"model {name!r} not found")
    return model


def lock_or_create_model(conn: Connection, name: str) -> ModelRecord:
    """The model row, locked for this transaction so version numbers are handed out in turn."""
    dialect_insert = sqlite_insert if conn.dialect.name == "sqlite" else pg_insert
    conn.execute(
        dialect_insert(t.models)
        .values(name=name, description="", created_at=now())
        .on_conflict_do_nothing(index_elements=["name"])
    )
    query = select(t.models).where(t.models.c.name == name)
    if conn.dialect.name != "sqlite":  # SQLite writers are already serialised by BEGIN IMMEDIATE
        query = query.with_for_update()
    return _model(conn.execute(query).one())


def list_models(conn: Connection) -> list[tuple[ModelRecord, int, int | None]]:
    """Each model with its number of versions and latest version."""
    counts = (
        select(
            t.versions.c.model_id,
            func.count().label("n"),
            func.max(t.versions.c.version).label("latest"),
        )
        .group_by(t.versions.c.model_id)
        .subquery()
    )
    query = (
        select(t.models, counts.c.n, counts.c.latest)
        .outerjoin(counts, counts.c.model_id == t.models.c.id)
        .order_by(t.models.c.name)
    )
    return [(_model(r), int(r.n or 0), r.latest) for r in conn.execute(query)]


# -- versions -----------------------------------------------------------------------------


def _version(row: Row[Any], model: str) -> VersionRecord:
    return VersionRecord(
        id=row.id,
        model=model,
        version=row.version,
        flavor=row.flavor,
        description=row.description,
        artifact=Artifact.from_dict(row.artifact),
        signature=row.signature,
        metrics=row.metrics,
        params=row.params,
        tags=row.tags,
        training=row.training,
        parent_version=row.parent_version,
        lineage=row.lineage,
        created_by=row.created_by,
        created_at=aware(row.created_at),
        pipeline=row.pipeline,
        memory_bytes=row.memory_bytes,
        archived_at=aware(row.archived_at) if row.archived_at else None,
    )


def next_version_number(conn: Connection, model: ModelRecord) -> int:
    latest = conn.execute(
        select(func.max(t.versions.c.version)).where(t.versions.c.model_id == model.id)
    ).scalar()
    return int(latest or 0) + 1


def insert_version(
    conn: Connection, model: ModelRecord, version: int, values: dict[str, JSON]
) -> VersionRecord:
    conn.execute(
        insert(t.versions).values(model_id=model.id, version=version, created_at=now(), **values)
    )
    return get_version(conn, model.name, version)


def find_version(conn: Connection, model: str, version: int) -> VersionRecord | None:
    query = (
        select(t.versions)
        .join(t.models, t.models.c.id == t.versions.c.model_id)
        .where(t.models.c.name == model, t.versions.c.version == version)
    )
    row = conn.execute(query).first()
    return _version(row, model) if row else None


def get_version(conn: Connection, model: str, version: int) -> VersionRecord:
    record = find_version(conn, model, version)
    if record is None:
        get_model(conn, model)
        raise NotFound(f"version {model}:{version} not found")
    return record


def list_versions(conn: Connection, model: str) -> list[VersionRecord]:
    query = (
        select(t.versions)
        .join(t.models, t.models.c.id == t.versions.c.model_id)
        .where(t.models.c.name == model)
        .order_by(t.versions.c.version)
    )
    return [_version(r, model) for r in conn.execute(query)]


# -- deployments and revisions --------------------------------------------------------------


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


# -- tokens and audit -----------------------------------------------------------------------


def _token(row: Row[Any]) -> TokenRecord:
    revoked = aware(row.revoked_at) if row.revoked_at else None
    return TokenRecord(
        row.id,
        row.name,
        TokenRole(row.role),
        aware(row.created_at),
        revoked,
        permissions=frozenset(Permission(p) for p in row.permissions or []),
        deployments=tuple(row.deployments) if row.deployments is not None else None,
        expires_at=aware(row.expires_at) if row.expires_at else None,
    )


def insert_token(
    conn: Connection,
    *,
    name: str,
    role: TokenRole,
    token_hash: str,
    permissions: frozenset[Permission] = frozenset(),
    deployments: tuple[str, ...] | None = None,
    expires_at: datetime | None = None,
) -> TokenRecord:
    conn.execute(
        insert(t.tokens).values(
            name=name,
            role=role.value,
            token_hash=token_hash,
            created_at=now(),
            permissions=sorted(p.value for p in permissions),
            deployments=list(deployments) if deployments is not None else None,
            expires_at=expires_at,
        )
    )
    row = conn.execute(select(t.tokens).where(t.tokens.c.token_hash == token_hash)).one()
    return _token(row)


def find_token(conn: Connection, token_hash: str) -> TokenRecord | None:
    row = conn.execute(
        select(t.tokens).where(t.tokens.c.token_hash == token_hash, t.tokens.c.revoked_at.is_(None))
    ).first()
    return _token(row) if row else None


def unrevoked_tokens(conn: Connection) -> dict[str, TokenRecord]:
    """Every token not revoked, by hash: what a gateway checks prediction calls against."""
    rows = conn.execute(select(t.tokens).where(t.tokens.c.revoked_at.is_(None)))
    return {row.token_hash: _token(row) for row in rows}


def list_tokens(conn: Connection) -> list[TokenRecord]:
    return [_token(r) for r in conn.execute(select(t.tokens).order_by(t.tokens.c.id))]


def revoke_token(conn: Connection, token_id: int) -> None:
    result = conn.execute(
        update(t.tokens)
        .where(t.tokens.c.id == token_id, t.tokens.c.revoked_at.is_(None))
        .values(revoked_at=now())
    )
    if result.rowcount == 0:
        raise NotFound(f"token {token_id} not found or already revoked")


def audit(conn: Connection, *, actor: str, action: str, target: str, detail: JSON) -> None:
    conn.execute(
        insert(t.audit_log).values(
            at=now(), actor=actor, action=action, target=target, detail=detail
        )
    )


def list_audit(conn: Connection, target_prefix: str | None = None) -> list[dict[str, JSON]]:
    query = select(t.audit_log).order_by(t.audit_log.c.id)
    if target_prefix:
        query = query.where(t.audit_log.c.target.startswith(target_prefix))
    return [
        {
            "at": aware(r.at).isoformat(),
            "actor": r.actor,
            "action": r.action,
            "target": r.target,
            "detail": r.detail,
        }
        for r in conn.execute(query)
    ]


# -- gateway workers ------------------------------------------------------------------------


def report_worker(
    conn: Connection,
    *,
    worker_id: str,
    host: str,
    pid: int,
    started_at: datetime,
    revisions: dict[str, int],
    stats: list[dict[str, JSON]] | None,
    errors: dict[str, dict[str, JSON]],
    breakers: list[dict[str, JSON]] | None = None,
    logging: dict[str, JSON] | None = None,
) -> None:
    """Upsert this worker's heartbeat: what it serves, its counters (None: unchanged since
    the last beat, left as stored), its load errors."""
    values: dict[str, Any] = {
        "heartbeat_at": now(),
        "revisions": revisions,
        "errors": errors,
        "breakers": breakers or [],
        "logging": logging or {},
    }
    if stats is not None:
        values["stats"] = stats
    updated = conn.execute(
        update(t.gateway_workers).where(t.gateway_workers.c.id == worker_id).values(**values)
    )
    if updated.rowcount == 0:
        conn.execute(
            insert(t.gateway_workers).values(
                {
                    "stats": [],
                    **values,
                    "id": worker_id,
                    "host": host,
                    "pid": pid,
                    "started_at": started_at,
                }
            )
        )


def _worker(row: Row[Any]) -> WorkerRecord:
    fields = row._mapping
    return WorkerRecord(
        id=row.id,
        host=row.host,
        pid=row.pid,
        started_at=aware(row.started_at),
        heartbeat_at=aware(row.heartbeat_at),
        revisions={str(k): int(v) for k, v in row.revisions.items()},
        stats=fields.get("stats") or [],
        errors=row.errors,
        breakers=fields.get("breakers") or [],
        logging=fields.get("logging") or {},
    )


LIGHT_WORKER_COLUMNS = ("id", "host", "pid", "started_at", "heartbeat_at", "revisions", "errors")
"""What acknowledging a change needs of a worker's heartbeat: not its traffic counters,
which grow with the deployments that have traffic."""


def list_workers(
    conn: Connection, *, alive_since: datetime | None = None, light: bool = False
) -> list[WorkerRecord]:
    """Workers, oldest first; `light` leaves out counters, breakers and logging stats."""
    columns = (
        [t.gateway_workers.c[name] for name in LIGHT_WORKER_COLUMNS]
        if light
        else [t.gateway_workers]
    )
    query = select(*columns).order_by(t.gateway_workers.c.started_at)
    if alive_since is not None:
        query = query.where(t.gateway_workers.c.heartbeat_at >= alive_since)
    return [_worker(r) for r in conn.execute(query)]


def forget_worker(conn: Connection, worker_id: str) -> None:
    conn.execute(delete(t.gateway_workers).where(t.gateway_workers.c.id == worker_id))
