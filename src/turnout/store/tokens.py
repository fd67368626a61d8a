"""API tokens in the metadata DB (only their hashes); callers own the transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, insert, select, update

from turnout.errors import NotFound
from turnout.store import schema as t
from turnout.store.clock import aware, now
from turnout.store.records import Permission, TokenRecord, TokenRole


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


def was_revoked(conn: Connection, token_hash: str) -> bool | None:
    """Whether the token with this hash was revoked; None when no token has it."""
    row = conn.execute(
        select(t.tokens.c.revoked_at).where(t.tokens.c.token_hash == token_hash)
    ).first()
    return None if row is None else row.revoked_at is not None


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
