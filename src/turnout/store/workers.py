"""Gateway workers' heartbeats in the metadata DB: what each serves, its counters and
errors; callers own the transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, delete, insert, select, update

from turnout.store import schema as t
from turnout.store.clock import aware, now
from turnout.store.records import WorkerRecord
from turnout.types import JSON


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
