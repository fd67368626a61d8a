"""Who may call the prediction routes: tokens are checked against an in-memory copy of the
token table, so no request waits on the DB (whatever tokens it makes up), and a revoked
token stops working within `ttl_s` seconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from enum import StrEnum

from turnout.api.auth import Principal, bearer_hash, principal_of
from turnout.errors import Forbidden, Unauthorized
from turnout.store.records import TokenRecord, TokenRole

TOKEN_TTL_S = 5.0
"""How old the copy of the token table may get (how long a revoked token still predicts)."""
MISS_REFRESH_S = 1.0
"""An unknown token makes the copy reload, at most this often: a token created a moment ago
may wait up to this long on its first call, and made-up tokens cost no DB round trip each."""


class PredictAuth(StrEnum):
    """Whether prediction routes need a token (`TURNOUT_PREDICT_AUTH`)."""

    OPTIONAL = "optional"
    """Tokens are checked (and their deployment scope applied) when sent, not required."""
    REQUIRED = "required"
    """Every prediction route needs a valid token of any role."""


class Access:
    """Authenticates prediction callers; `tokens` reads every unrevoked token by hash."""

    def __init__(
        self,
        *,
        mode: PredictAuth,
        tokens: Callable[[], dict[str, TokenRecord]],
        ttl_s: float = TOKEN_TTL_S,
        miss_refresh_s: float = MISS_REFRESH_S,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.mode = mode
        self._tokens = tokens
        self._ttl_s = ttl_s
        self._miss_refresh_s = miss_refresh_s
        self._clock = clock
        self._sleep = sleep
        self._known: dict[str, TokenRecord] = {}
        self._read_at = -float("inf")
        """When the copy in hand started to be read."""
        self._loading = asyncio.Lock()

    async def principal(self, header: str | None) -> Principal | None:
        """The caller, None for an anonymous call that is allowed; raises 401 otherwise."""
        if not header:
            if self.mode is PredictAuth.REQUIRED:
                raise Unauthorized(
                    "missing token: prediction routes need 'Authorization: Bearer <token>' "
                    "(TURNOUT_PREDICT_AUTH=required)"
                )
            return None
        digest = bearer_hash(header)
        if self._clock() - self._read_at >= self._ttl_s:
            await self._read_since(self._clock() - self._ttl_s, wait=False)
        record = self._known.get(digest)
        if record is None:
            await self._read_since(self._clock(), wait=True)
            record = self._known.get(digest)
        return principal_of(record)

    async def _read_since(self, moment: float, *, wait: bool) -> None:
        """Make sure the copy was read after `moment`; concurrent callers share one read.
        With `wait`, a read follows the previous one by at least `miss_refresh_s`."""
        async with self._loading:
            if self._read_at >= moment:
                return
            pause_s = self._read_at + self._miss_refresh_s - self._clock()
            if wait and pause_s > 0:
                await self._sleep(pause_s)
            started = self._clock()
            self._known = await asyncio.to_thread(self._tokens)
            self._read_at = started


def check_deployment(principal: Principal | None, deployment: str) -> None:
    """A token scoped to some deployments may call only those."""
    if principal is not None and not principal.may_call(deployment):
        raise Forbidden(f"token {principal.name!r} may not call deployment {deployment!r}")


def may_address_any_version(principal: Principal | None) -> bool:
    """Deployers and admins may call any version by number, routed or not."""
    return principal is not None and principal.role.allows(TokenRole.DEPLOYER)
