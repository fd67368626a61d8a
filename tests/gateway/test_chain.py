"""The answer chain's queue limit: it stops requests queueing behind others, never a single
batch larger than the limit sent to an idle version."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any, cast

import numpy as np
import pytest

from turnout.gateway.breaker import BreakerPolicy
from turnout.gateway.chain import Chain, NoAnswer
from turnout.monitoring.stats import TrafficStats
from turnout.registry.flavors import Prediction
from turnout.registry.servable import Servable
from turnout.store.records import Role, RoutingConfig
from turnout.types import Array

LIMIT = 512


class HeldRunner:
    """Answers zeros for every row once `release` is set."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def predict(self, servable: Servable, rows: Array) -> Prediction:
        await self.release.wait()
        return Prediction(np.zeros(len(rows)))

    async def keep_only(self, keys: set[tuple[str, int]]) -> None:
        return None

    async def close(self) -> None:
        return None


def servable() -> Servable:
    return cast(Servable, SimpleNamespace(record=SimpleNamespace(model="m"), version=1))


async def call(chain: Chain, rows: int) -> Any:
    return await chain.answer(
        deployment="d", config=RoutingConfig(champion=1), model="m", version=1,
        servable=servable(), role=Role.CHAMPION, rows=np.zeros((rows, 3)),
        started=time.perf_counter(),
    )  # fmt: skip


async def _busy_version_refuses_then_idle_takes_big_batch() -> None:
    runner = HeldRunner()
    chain = Chain(
        runner, TrafficStats(), lambda m, v: None,  # type: ignore[arg-type,return-value]
        policy=BreakerPolicy(), max_pending_rows=LIMIT,
    )  # fmt: skip
    first = asyncio.create_task(call(chain, 10))
    await asyncio.sleep(0)
    with pytest.raises(NoAnswer, match=r"10 rows wait and this request brings 600.*"
                       r"TURNOUT_MAX_PENDING_ROWS=512"):  # fmt: skip
        await call(chain, 600)
    runner.release.set()
    assert len((await first).prediction.values) == 10
    big = await call(chain, 2000)  # nothing waits: one large batch runs
    assert len(big.prediction.values) == 2000


def test_a_batch_over_the_limit_runs_when_nothing_waits_and_names_the_setting_otherwise() -> None:
    asyncio.run(_busy_version_refuses_then_idle_takes_big_batch())
