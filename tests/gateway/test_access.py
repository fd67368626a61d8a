"""Prediction callers are checked against a short-lived token cache, not the DB per request."""

from __future__ import annotations

import asyncio

import pytest

from turnout.api.auth import Principal
from turnout.errors import Forbidden, Unauthorized
from turnout.gateway.access import Access, PredictAuth, check_deployment, may_address_any_version
from turnout.store.records import TokenRole

ALICE = Principal("alice", TokenRole.PREDICTOR, deployments=("fraud",))


class Tokens:
    """Stands in for `Tokens.authenticate`: counts DB checks; revoked tokens are refused."""

    def __init__(self) -> None:
        self.checks = 0
        self.valid = {"Bearer good": ALICE}

    def authenticate(self, header: str) -> Principal:
        self.checks += 1
        principal = self.valid.get(header)
        if principal is None:
            raise Unauthorized("invalid or revoked token")
        return principal


def test_required_mode_refuses_anonymous_calls() -> None:
    access = Access(mode=PredictAuth.REQUIRED, authenticate=Tokens().authenticate)
    with pytest.raises(Unauthorized, match="missing token"):
        asyncio.run(access.principal(None))


def test_optional_mode_lets_anonymous_calls_in_but_checks_tokens_sent() -> None:
    access = Access(mode=PredictAuth.OPTIONAL, authenticate=Tokens().authenticate)
    assert asyncio.run(access.principal(None)) is None
    with pytest.raises(Unauthorized, match="invalid or revoked"):
        asyncio.run(access.principal("Bearer forged"))


def test_checks_are_cached_and_revocation_takes_effect_after_the_ttl() -> None:
    tokens = Tokens()
    now = [0.0]
    access = Access(
        mode=PredictAuth.REQUIRED, authenticate=tokens.authenticate, ttl_s=5.0,
        clock=lambda: now[0],
    )  # fmt: skip

    async def calls(n: int, header: str) -> None:
        for _ in range(n):
            await access.principal(header)

    asyncio.run(calls(1000, "Bearer good"))
    assert tokens.checks == 1
    for _ in range(1000):  # forged tokens are refused from the cache too
        with pytest.raises(Unauthorized):
            asyncio.run(access.principal("Bearer forged"))
    assert tokens.checks == 2
    del tokens.valid["Bearer good"]  # revoked
    now[0] = 4.9
    asyncio.run(calls(1, "Bearer good"))
    now[0] = 5.1
    with pytest.raises(Unauthorized, match="revoked"):
        asyncio.run(access.principal("Bearer good"))


def test_scoped_tokens_call_only_their_deployments() -> None:
    check_deployment(ALICE, "fraud")
    check_deployment(None, "anything")  # anonymous, where allowed
    with pytest.raises(Forbidden, match="may not call deployment 'churn'"):
        check_deployment(ALICE, "churn")


def test_only_deployers_may_call_unrouted_versions() -> None:
    assert not may_address_any_version(None)
    assert not may_address_any_version(ALICE)
    assert not may_address_any_version(Principal("v", TokenRole.VIEWER))
    assert may_address_any_version(Principal("ci", TokenRole.DEPLOYER))
    assert may_address_any_version(Principal("root", TokenRole.ADMIN))
