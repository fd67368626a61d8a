"""Console sessions in the metadata DB (only the hash of each cookie's secret); callers own
the transaction.

Sessions live in the database, not in a worker's memory, so any worker of any node can
check one, and signing out ends it everywhere at once.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Connection, delete, insert, or_, select, update

from turnout.store import schema as t
from turnout.store.clock import now

KEEP_ENDED = timedelta(days=1)
"""How long an ended or expired session's row stays before a sign-in sweeps it away."""


def insert_session(
    conn: Connection, *, session_hash: str, token_id: int, expires_at: datetime
) -> None:
    conn.execute(
        insert(t.console_sessions).values(
            session_hash=session_hash, token_id=token_id, created_at=now(), expires_at=expires_at
        )
    )


def session_token_hash(conn: Connection, session_hash: str) -> str | None:
    """The hash of the token a live session was exchanged for (None: unknown, ended or
    expired). The token's own revocation and expiry are the caller's to check."""
    s = t.console_sessions
    return conn.execute(
        select(t.tokens.c.token_hash)
        .join(s, s.c.token_id == t.tokens.c.id)
        .where(s.c.session_hash == session_hash, s.c.ended_at.is_(None), s.c.expires_at > now())
    ).scalar_one_or_none()


def end_session(conn: Connection, session_hash: str) -> bool:
    """End a live session; False when it was not live."""
    s = t.console_sessions
    result = conn.execute(
        update(s)
        .where(s.c.session_hash == session_hash, s.c.ended_at.is_(None))
        .values(ended_at=now())
    )
    return result.rowcount > 0


def sweep_sessions(conn: Connection) -> int:
    """Delete sessions that ended or expired more than a day ago."""
    s = t.console_sessions
    cutoff = now() - KEEP_ENDED
    result = conn.execute(delete(s).where(or_(s.c.ended_at < cutoff, s.c.expires_at < cutoff)))
    return result.rowcount
