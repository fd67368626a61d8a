"""Models and their versions in the metadata DB, returning records; callers own the
transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Row, func, insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from turnout.errors import NotFound
from turnout.store import schema as t
from turnout.store.clock import aware, now
from turnout.store.records import Artifact, ModelRecord, VersionRecord
from turnout.types import JSON


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
