"""The shadow mirror: a shadow that holds its calls never holds the copies' senders; copies
beyond the queue are dropped and counted, and every copy ends up either answered or dropped."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import SimpleNamespace
from typing import cast

import numpy as np

from turnout.gateway.shadow import ShadowJob, ShadowMirror
from turnout.monitoring.stats import TrafficStats
from turnout.registry.flavors import Prediction
from turnout.registry.servable import Servable
from turnout.registry.signature import Signature
from turnout.types import Array

SIGNATURE = Signature(columns=(), named=False)
SERVABLE = cast(Servable, SimpleNamespace(signature=SIGNATURE))
DEADLINE_S = 10.0


class HeldRunner:
    """A shadow runner whose calls wait until `release` is set."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.calls: list[int] = []

    async def predict(self, servable: Servable, rows: Array) -> Prediction:
        self.calls.append(len(rows))
        await self.release.wait()
        return Prediction(np.zeros(len(rows)))

    async def keep_only(self, keys: set[tuple[str, int]]) -> None:
        return None

    async def close(self) -> None:
        return None


async def load(model: str, version: int) -> Servable:
    return SERVABLE


def job() -> ShadowJob:
    rows = np.ones((1, 3))
    return ShadowJob(
        "prod", "m", 2, rows, SIGNATURE, lambda _: rows, Prediction(np.zeros(1)), ids=("id",)
    )


async def eventually(check: Callable[[], bool]) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE_S
    while not check():
        assert loop.time() < deadline, "the condition never held"
        await asyncio.sleep(0.001)


async def held_shadow_overflows_its_queue() -> None:
    stats, runner = TrafficStats(), HeldRunner()
    mirror = ShadowMirror(stats, load, runner, queue_size=3, concurrency=1, linger_ms=0)
    counter = stats.counter("prod", 2, "shadow")
    mirror.start()
    try:
        mirror.submit(job())
        await eventually(lambda: runner.calls == [1])  # the only slot is held
        for _ in range(5):
            mirror.submit(job())  # returns at once: three wait in the queue, two are dropped
        assert (mirror.dropped, counter.dropped, counter.requests) == (2, 2, 0)
        runner.release.set()
        await eventually(lambda: counter.requests == 4)
        assert runner.calls == [1, 3]  # the queued copies share one call
        assert (counter.requests + counter.dropped, counter.errors, counter.compared) == (6, 0, 4)
    finally:
        await mirror.stop()


def test_a_held_shadow_drops_copies_beyond_its_queue_and_counts_every_one() -> None:
    asyncio.run(held_shadow_overflows_its_queue())
