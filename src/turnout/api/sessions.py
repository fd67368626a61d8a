"""Console sessions: an API token exchanged once for a random secret that the browser keeps
in an HttpOnly cookie. The database keeps the secret's hash; the CSRF token is derived from
the secret, so a page can be handed it but a forged request from elsewhere cannot know it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from turnout.api.auth import SESSION_SCHEME, Principal, Tokens, hash_token, principal_of
from turnout.errors import Unauthorized
from turnout.store import metadata as md
from turnout.store import sessions as store
from turnout.store.records import TokenRole

SESSION_COOKIE = "turnout_session"
CSRF_HEADER = "x-csrf-token"
SESSION_TTL = timedelta(hours=12)
"""A session ends this long after sign-in at the latest (sooner if its token expires)."""
_CSRF_CONTEXT = b"turnout console csrf v1"


def csrf_token(secret: str) -> str:
    """The CSRF token of the session whose cookie holds `secret`."""
    digest = hmac.new(secret.encode(), _CSRF_CONTEXT, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def csrf_matches(secret: str, sent: str | None) -> bool:
    return sent is not None and hmac.compare_digest(csrf_token(secret), sent)


def authorization(secret: str) -> str:
    """The Authorization header that stands for the session with the API."""
    return f"{SESSION_SCHEME.capitalize()} {secret}"


@dataclass(frozen=True, slots=True)
class SignedIn:
    secret: str
    """The cookie's value: shown to the browser once, never to page scripts."""
    principal: Principal
    expires_at: datetime

    @property
    def max_age_s(self) -> int:
        return max(0, int((self.expires_at - datetime.now(UTC)).total_seconds()))


class Sessions:
    """Start, check and end console sessions; every start and end is audited under the
    token's name."""

    def __init__(self, tokens: Tokens, *, ttl: timedelta = SESSION_TTL) -> None:
        self.tokens = tokens
        self.ttl = ttl

    def start(self, token: str) -> SignedIn:
        """A new session for a valid token; 401 for an unknown, revoked or expired one, 403
        for one that may not even read (a predictor's)."""
        token = token.strip()
        if not token:
            raise Unauthorized("enter an API token")
        digest = hash_token(token)
        secret = secrets.token_urlsafe(32)
        with self.tokens.db.write() as conn:
            record = md.find_token(conn, digest)
            principal = principal_of(record)
            assert record is not None  # principal_of refused it otherwise
            Tokens.authorize(principal, TokenRole.VIEWER)
            expires_at = datetime.now(UTC) + self.ttl
            if record.expires_at is not None:
                expires_at = min(expires_at, record.expires_at)
            store.sweep_sessions(conn)
            store.insert_session(
                conn, session_hash=hash_token(secret), token_id=record.id, expires_at=expires_at
            )
            md.audit(conn, actor=principal.name, action="session.start", target=principal.name,
                     detail={"expires_at": expires_at.isoformat()})  # fmt: skip
        return SignedIn(secret, principal, expires_at)

    def principal(self, secret: str) -> Principal:
        return self.tokens.session_principal(secret)

    def end(self, secret: str) -> None:
        """Sign out: the session is ended in the database, for every worker at once (a
        session that already ended is left as it is)."""
        try:
            principal = self.principal(secret)
        except Unauthorized:
            return
        with self.tokens.db.write() as conn:
            if store.end_session(conn, hash_token(secret)):
                md.audit(conn, actor=principal.name, action="session.end",
                         target=principal.name, detail={})  # fmt: skip
