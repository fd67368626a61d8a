"""Prediction callers are checked against an in-memory copy of the token table: no DB round
trip per request, made-up tokens included, and revocation within the copy's lifetime."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from turnout.api.auth import Principal, hash_token
from turnout.errors import Forbidden, Unauthorized
from turnout.gateway.access import Access, PredictAuth, check_deployment, may_address_any_version
from turnout.store.records import TokenRecord, TokenRole

ALICE = Principal("alice", TokenRole.PREDICTOR, deployments=("fraud",))


def record(name: str, *, expires_at: datetime | None = None) -> TokenRecord:
    return TokenRecord(1, name, TokenRole.PREDICTOR, datetime.now(UTC), None,
                       deployments=("fraud",), expires_at=expires_at)  # fmt: skip


class Table:
    """Stands in for `Tokens.unrevoked`: counts how often the DB is read."""

    def __init__(self) -> None:
        self.reads = 0
        self.rows = {hash_token("good"): record("alice")}

    def unrevoked(self) -> dict[str, TokenRecord]:
        self.reads += 1
        return dict(self.rows)


def access(
    table: Table,
    now: list[float],
    mode: PredictAuth = PredictAuth.REQUIRED,
    pauses: list[float] | None = None,
) -> Access:
    async def sleep(seconds: float) -> None:
        (pauses if pauses is not None else []).append(seconds)
        now[0] += seconds

    return Access(mode=mode, tokens=table.unrevoked, ttl_s=5.0, miss_refresh_s=1.0,
                  clock=lambda: now[0], sleep=sleep)  # fmt: skip


def test_required_mode_refuses_anonymous_calls() -> None:
    with pytest.raises(Unauthorized, match="missing token"):
        asyncio.run(access(Table(), [0.0]).principal(None))


def test_optional_mode_lets_anonymous_calls_in_but_checks_tokens_sent() -> None:
    checker = access(Table(), [0.0], PredictAuth.OPTIONAL)
    assert asyncio.run(checker.principal(None)) is None
    assert asyncio.run(checker.principal("Bearer good")) == ALICE
    with pytest.raises(Unauthorized, match="invalid or revoked"):
        asyncio.run(checker.principal("Bearer forged"))
    with pytest.raises(Unauthorized, match="must be 'Bearer <token>'"):
        asyncio.run(checker.principal("Basic abc"))


def test_made_up_tokens_cost_at_most_one_db_read_a_second() -> None:
    table, now = Table(), [0.0]
    checker = access(table, now)

    async def refused(header: str) -> None:
        with pytest.raises(Unauthorized, match="invalid or revoked"):
            await checker.principal(header)

    async def flood() -> None:
        assert await checker.principal("Bearer good") == ALICE
        now[0] = 0.5
        await asyncio.gather(*(refused(f"Bearer forged-{i}") for i in range(1000)))
        assert table.reads == 2  # 1,000 made-up tokens at once: one read between them
        for i in range(100):  # one caller after another: each waits for the next read
            await refused(f"Bearer again-{i}")
            assert await checker.principal("Bearer good") == ALICE

    asyncio.run(flood())
    assert table.reads <= now[0] + 1


def test_a_new_token_works_within_a_second_and_a_revoked_one_stops_within_the_ttl() -> None:
    table, now, pauses = Table(), [0.0], []
    checker = access(table, now, pauses=pauses)
    asyncio.run(checker.principal("Bearer good"))
    table.rows[hash_token("new")] = record("bob")
    now[0] = 0.25
    principal = asyncio.run(checker.principal("Bearer new"))
    assert principal is not None
    assert principal.name == "bob"
    assert pauses == [0.75]  # waited for its turn to read the table, not refused
    del table.rows[hash_token("good")]  # revoked at 1.0, read at 1.0
    now[0] = 5.9
    assert asyncio.run(checker.principal("Bearer good")) == ALICE
    now[0] = 6.1
    with pytest.raises(Unauthorized, match="invalid or revoked"):
        asyncio.run(checker.principal("Bearer good"))


def test_expired_tokens_are_refused_from_the_copy() -> None:
    table, now = Table(), [0.0]
    table.rows[hash_token("old")] = record("old", expires_at=datetime.now(UTC) - timedelta(1))
    with pytest.raises(Unauthorized, match="token 'old' expired at"):
        asyncio.run(access(table, now).principal("Bearer old"))


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
