"""The audit log: one entry per state change, read back with filters, newest first, a page
at a time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, insert, select

from turnout.store import schema as t
from turnout.store.clock import aware, now
from turnout.types import JSON

MAX_PAGE = 1000


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


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditQuery:
    """Which entries to read; every filter is optional."""

    since: datetime | None = None
    actor: str | None = None
    action: str | None = None
    """A prefix: `token.` matches `token.create` and `token.revoke`."""
    target: str | None = None
    before_id: int | None = None
    """Paging: only entries older than this id (the last id of the previous page)."""
    limit: int = 100


def find_audit(conn: Connection, query: AuditQuery) -> list[dict[str, JSON]]:
    log = t.audit_log
    statement = select(log).order_by(log.c.id.desc()).limit(min(max(query.limit, 1), MAX_PAGE))
    if query.since is not None:
        statement = statement.where(log.c.at >= query.since)
    if query.actor is not None:
        statement = statement.where(log.c.actor == query.actor)
    if query.action:
        statement = statement.where(log.c.action.startswith(query.action, autoescape=True))
    if query.target is not None:
        statement = statement.where(log.c.target == query.target)
    if query.before_id is not None:
        statement = statement.where(log.c.id < query.before_id)
    return [
        {
            "id": r.id,
            "at": aware(r.at).isoformat(),
            "actor": r.actor,
            "action": r.action,
            "target": r.target,
            "detail": r.detail,
        }
        for r in conn.execute(statement)
    ]
