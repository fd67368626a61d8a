"""The shadow mirror: copies of live requests go to warm-up versions, off the request path.

A bounded queue and a separate, small thread pool keep shadow work from ever delaying or
failing a live answer: when either is full the copy is dropped and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from turnout.monitoring.stats import TrafficStats
from turnout.registry.flavors import Prediction
from turnout.registry.servable import Servable
from turnout.registry.signature import Signature
from turnout.store.records import Role
from turnout.types import Array

log = logging.getLogger("turnout.gateway")


@dataclass(frozen=True, slots=True)
class ShadowJob:
    deployment: str
    model: str
    version: int
    rows: Array
    """The rows as decoded for the live answer's signature."""
    signature: Signature
    decode: Callable[[Servable], Array]
    """Decodes the request again for a shadow whose signature differs."""
    champion: Prediction


class ShadowMirror:
    def __init__(
        self,
        stats: TrafficStats,
        load: Callable[[str, int], Awaitable[Servable]],
        *,
        queue_size: int = 1000,
        threads: int = 2,
        timeout_s: float = 10.0,
    ) -> None:
        self.stats = stats
        self._load = load
        self._queue: asyncio.Queue[ShadowJob] = asyncio.Queue(maxsize=queue_size)
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="shadow")
        self._slots = asyncio.Semaphore(threads)
        self._timeout_s = timeout_s
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0

    def submit(self, job: ShadowJob) -> None:
        """Never blocks and never raises: a full queue drops the copy and counts it."""
        if self._queue.full():
            self._drop(job)
        else:
            self._queue.put_nowait(job)

    def _drop(self, job: ShadowJob) -> None:
        self.dropped += 1
        self.stats.counter(job.deployment, job.version, Role.SHADOW.value).dropped += 1

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _run(self) -> None:
        """Take a job only when a shadow thread is free; while all are busy (a slow shadow)
        the queue fills and further copies are dropped at `submit`, costing callers nothing."""
        while True:
            await self._slots.acquire()
            job = await self._queue.get()
            task = asyncio.create_task(self._shadow(job))
            task.add_done_callback(lambda _: self._slots.release())

    async def _shadow(self, job: ShadowJob) -> None:
        counter = self.stats.counter(job.deployment, job.version, Role.SHADOW.value)
        started = time.perf_counter()
        try:
            servable = await self._load(job.model, job.version)
            rows = job.rows if servable.signature == job.signature else job.decode(servable)
            loop = asyncio.get_running_loop()
            future = loop.run_in_executor(self._executor, servable.predict, rows)
            prediction = await asyncio.wait_for(future, self._timeout_s)
        except TimeoutError:
            counter.timeouts += 1
            counter.observe((time.perf_counter() - started) * 1000, ok=False)
            return
        except Exception as exc:  # a shadow may fail in any way; it never matters to callers
            log.debug("shadow %s:%s failed: %s", job.model, job.version, exc)
            counter.observe((time.perf_counter() - started) * 1000, ok=False)
            return
        counter.observe((time.perf_counter() - started) * 1000)
        agreed, compared = agreement(job.champion, prediction)
        counter.agreed += agreed
        counter.compared += compared


def agreement(champion: Prediction, shadow: Prediction) -> tuple[int, int]:
    """Rows where the shadow gives the champion's answer (labels equal, numbers within 1e-6)."""
    a, b = np.asarray(champion.values), np.asarray(shadow.values)
    if a.shape != b.shape:
        return 0, len(a)
    if a.dtype.kind in "fc" or b.dtype.kind in "fc":
        try:
            same = np.isclose(a.astype(float), b.astype(float), rtol=1e-6, atol=1e-9)
        except (TypeError, ValueError):
            same = a == b
    else:
        same = a == b
    if same.ndim > 1:
        same = same.all(axis=tuple(range(1, same.ndim)))
    return int(np.count_nonzero(same)), len(a)
