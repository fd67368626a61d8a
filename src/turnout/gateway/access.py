"""Who may call the prediction routes: tokens are checked against a short-lived cache, so
a request costs no DB round trip, and a revoked or expired token stops working within
`ttl_s` seconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from enum import StrEnum

from turnout.api.auth import Principal, hash_token
from turnout.errors import Forbidden, Unauthorized
from turnout.store.records import TokenRole

TOKEN_TTL_S = 5.0
"""How long a token's check is trusted before the DB is asked again (revocation delay)."""
MAX_CACHED_TOKENS = 10_000
"""Bounds the cache under a flood of made-up tokens (each is refused from the cache too)."""


class PredictAuth(StrEnum):
    """Whether prediction routes need a token (`TURNOUT_PREDICT_AUTH`)."""

    OPTIONAL = "optional"
    """Tokens are checked (and their deployment scope applied) when sent, not required."""
    REQUIRED = "required"
    """Every prediction route needs a valid token of any role."""


Checked = Principal | str
"""The caller, or why its token is refused."""


class Access:
    """Authenticates prediction callers; `authenticate` is the DB check it caches."""

    def __init__(
        self,
        *,
        mode: PredictAuth,
        authenticate: Callable[[str], Principal],
        ttl_s: float = TOKEN_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.mode = mode
        self._authenticate = authenticate
        self._ttl_s = ttl_s
        self._clock = clock
        self._cache: dict[str, tuple[float, Checked]] = {}

    async def principal(self, header: str | None) -> Principal | None:
        """The caller, None for an anonymous call that is allowed; raises 401 otherwise."""
        if not header:
            if self.mode is PredictAuth.REQUIRED:
                raise Unauthorized(
                    "missing token: prediction routes need 'Authorization: Bearer <token>' "
                    "(TURNOUT_PREDICT_AUTH=required)"
                )
            return None
        key = hash_token(header)
        now = self._clock()
        cached = self._cache.get(key)
        if cached is None or cached[0] <= now:
            checked = await asyncio.to_thread(self._check, header)
            self._remember(key, now + self._ttl_s, checked)
        else:
            checked = cached[1]
        if isinstance(checked, str):
            raise Unauthorized(checked)
        return checked

    def _check(self, header: str) -> Checked:
        try:
            return self._authenticate(header)
        except Unauthorized as exc:
            return exc.message

    def _remember(self, key: str, until: float, checked: Checked) -> None:
        if len(self._cache) >= MAX_CACHED_TOKENS:
            now = self._clock()
            self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
            if len(self._cache) >= MAX_CACHED_TOKENS:
                self._cache.clear()
        self._cache[key] = (until, checked)


def check_deployment(principal: Principal | None, deployment: str) -> None:
    """A token scoped to some deployments may call only those."""
    if principal is not None and not principal.may_call(deployment):
        raise Forbidden(f"token {principal.name!r} may not call deployment {deployment!r}")


def may_address_any_version(principal: Principal | None) -> bool:
    """Deployers and admins may call any version by number, routed or not."""
    return principal is not None and principal.role.allows(TokenRole.DEPLOYER)
