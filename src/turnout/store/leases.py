"""Named leases with an expiry: who leads the controller. One row per lease; the write
transaction that takes it is what makes two processes never both win."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from turnout.store import schema as t
from turnout.store.clock import aware, now


def acquire_lease(conn: Connection, name: str, holder: str, ttl_s: float) -> bool:
    """Take or renew the lease `name` for `holder` unless another holder's is still valid.
    Run inside a write transaction (SQLite: BEGIN IMMEDIATE; PostgreSQL: the row lock of
    `SELECT .. FOR UPDATE`), so two processes never both win."""
    at = now()
    row = conn.execute(select(t.leases).where(t.leases.c.name == name).with_for_update()).first()
    expires = at + timedelta(seconds=ttl_s)
    if row is None:
        try:
            with conn.begin_nested():  # another process may insert the first row meanwhile
                conn.execute(insert(t.leases).values(name=name, holder=holder, expires_at=expires))
        except IntegrityError:
            return False
        return True
    if row.holder != holder and aware(row.expires_at) > at:
        return False
    conn.execute(
        update(t.leases).where(t.leases.c.name == name).values(holder=holder, expires_at=expires)
    )
    return True


def release_lease(conn: Connection, name: str, holder: str) -> None:
    conn.execute(
        update(t.leases)
        .where(t.leases.c.name == name)
        .where(t.leases.c.holder == holder)
        .values(expires_at=datetime(1970, 1, 1, tzinfo=now().tzinfo))
    )
