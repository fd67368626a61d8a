"""API tokens: hashed at rest, one role each, the first admin token written to a 0600 file."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.exc import IntegrityError

from turnout.errors import BadRequest, Forbidden, Unauthorized
from turnout.store import metadata as md
from turnout.store import sessions
from turnout.store.db import Database
from turnout.store.records import Permission, TokenRecord, TokenRole
from turnout.store.tokens import was_revoked
from turnout.types import JSON

MIN_GIVEN_TOKEN = 20
"""Characters an operator-chosen admin token needs at least."""

TOKEN_PREFIX = "tnt_"
SESSION_SCHEME = "session"
"""`Authorization: Session <secret>`: a console session, as the console's door hands it on
once the request's CSRF token has been checked."""


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    role: TokenRole
    permissions: frozenset[Permission] = frozenset()
    deployments: tuple[str, ...] | None = None
    """The deployments this caller may call predictions on (None: all)."""

    def allowed(self, permission: Permission) -> bool:
        """Whether this caller holds `permission` (admins hold every one)."""
        return self.role is TokenRole.ADMIN or permission in self.permissions

    def may_call(self, deployment: str) -> bool:
        return self.deployments is None or deployment in self.deployments


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def bearer_hash(header: str) -> str:
    """The hash of the token in an `Authorization: Bearer <token>` header."""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("the Authorization header must be 'Bearer <token>'")
    return hash_token(token.strip())


def principal_of(record: TokenRecord | None) -> Principal:
    """The caller a stored token stands for; 401 if it is unknown, revoked or expired."""
    if record is None or record.revoked_at is not None:
        raise Unauthorized("invalid or revoked token")
    if record.expires_at is not None and record.expires_at <= datetime.now(UTC):
        raise Unauthorized(f"token {record.name!r} expired at {record.expires_at.isoformat()}")
    return Principal(record.name, record.role, record.permissions, record.deployments)


class Tokens:
    def __init__(self, db: Database) -> None:
        self.db = db

    def authenticate(self, header: str | None) -> Principal:
        if not header:
            raise Unauthorized(
                "missing token: send 'Authorization: Bearer <token>' "
                "(the CLI reads TURNOUT_TOKEN or the local admin token file)"
            )
        scheme, _, credential = header.partition(" ")
        if scheme.lower() == SESSION_SCHEME:
            return self.session_principal(credential.strip())
        digest = bearer_hash(header)
        with self.db.read() as conn:
            return principal_of(md.find_token(conn, digest))

    def session_principal(self, secret: str) -> Principal:
        """The caller a console session stands for: the token it was exchanged for, as long
        as the session is live and the token is not revoked or expired."""
        with self.db.read() as conn:
            token_hash = sessions.session_token_hash(conn, hash_token(secret))
            if token_hash is None:
                raise Unauthorized("the console session ended or expired: sign in again")
            return principal_of(md.find_token(conn, token_hash))

    def unrevoked(self) -> dict[str, TokenRecord]:
        """Every token not revoked, by hash (expired ones too: their callers are told so)."""
        with self.db.read() as conn:
            return md.unrevoked_tokens(conn)

    @staticmethod
    def authorize(principal: Principal, needed: TokenRole) -> None:
        if not principal.role.allows(needed):
            raise Forbidden(
                f"token {principal.name!r} has role {principal.role.value}; "
                f"this needs {needed.value}"
            )

    def create(
        self,
        name: str,
        role: TokenRole,
        *,
        actor: str,
        permissions: frozenset[Permission] = frozenset(),
        deployments: tuple[str, ...] | None = None,
        expires_at: datetime | None = None,
    ) -> tuple[str, TokenRecord]:
        """A new token (its secret is returned once, only its hash is kept), audited as
        created by `actor`."""
        token = new_token()
        with self.db.write() as conn:
            record = md.insert_token(
                conn,
                name=name,
                role=role,
                token_hash=hash_token(token),
                permissions=permissions,
                deployments=deployments,
                expires_at=expires_at,
            )
            detail: dict[str, JSON] = {
                "id": record.id,
                "role": role.value,
                "permissions": sorted(p.value for p in permissions),
                "deployments": list(deployments) if deployments is not None else None,
                "expires_at": expires_at.isoformat() if expires_at else None,
            }
            md.audit(conn, actor=actor, action="token.create", target=name, detail=detail)
        return token, record

    def list_all(self) -> list[TokenRecord]:
        with self.db.read() as conn:
            return md.list_tokens(conn)

    def revoke(self, token_id: int, actor: str) -> None:
        with self.db.write() as conn:
            md.revoke_token(conn, token_id)
            md.audit(conn, actor=actor, action="token.revoke", target=str(token_id), detail={})

    def ensure_admin(self, path: Path, given: str | None = None) -> str:
        """The admin token in `path`, creating it (and its DB row) on first start.

        `given` (TURNOUT_ADMIN_TOKEN, from a secret) is the one admin token of a cluster:
        every node registers it if the database lacks it, and none makes one of its own. A
        revoked one is never brought back.

        Several worker processes may start at once: a file lock makes one of them create it.
        """
        path.parent.mkdir(parents=True, exist_ok=True)
        with (path.parent / ".admin-token.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if given is not None:
                self._adopt(given)
                _write_private(path, given)
                return given
            if path.is_file():
                token = path.read_text().strip()
                with self.db.read() as conn:
                    if md.find_token(conn, hash_token(token)) is not None:
                        return token
            token = new_token()
            with self.db.write() as conn:
                md.insert_token(
                    conn, name="admin", role=TokenRole.ADMIN, token_hash=hash_token(token)
                )
            _write_private(path, token)
            return token

    def _adopt(self, token: str) -> None:
        """Register `token` as the admin token unless the database already has it."""
        if len(token) < MIN_GIVEN_TOKEN:
            raise BadRequest(
                f"TURNOUT_ADMIN_TOKEN is too short: use at least {MIN_GIVEN_TOKEN} random "
                "characters (e.g. `python -c 'import secrets; print(secrets.token_urlsafe())'`)"
            )
        digest = hash_token(token)
        with self.db.read() as conn:
            revoked = was_revoked(conn, digest)
        if revoked:
            raise Forbidden("TURNOUT_ADMIN_TOKEN was revoked; give the server a new one")
        if revoked is None:
            # another node may register it at the same moment: its row is as good as ours
            with contextlib.suppress(IntegrityError), self.db.write() as conn:
                md.insert_token(conn, name="admin", role=TokenRole.ADMIN, token_hash=digest)


def _write_private(path: Path, token: str) -> None:
    partial = path.with_suffix(".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    os.replace(partial, path)
