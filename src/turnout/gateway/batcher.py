"""Adaptive batching: concurrent requests for one version share one `predict` call.

Nothing waits when the version is idle: a request runs at once. While a call is running,
new requests queue; when it returns, everything queued (up to `max_rows`) goes in the next
call. So batches grow with load and a lone request pays no batching delay. A version with
several replicas has up to that many calls running at once. One `predict`
on 64 rows costs about what one row costs for most tabular models; that is the headroom.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

from turnout.registry.flavors import Prediction
from turnout.types import Array

Call = Callable[[Array], Awaitable[Prediction]]
"""Runs one `predict` somewhere (a thread, inline, another process) and awaits it."""


class Batcher:
    def __init__(
        self,
        call: Call,
        *,
        max_rows: int = 64,
        max_wait_ms: float = 0.0,
        parallel: Callable[[], int] = lambda: 1,
        on_backlog: Callable[[], None] | None = None,
    ) -> None:
        self._call = call
        self.max_rows = max_rows
        self.max_wait_s = max_wait_ms / 1000
        self._parallel = parallel
        """How many calls may run at once (the version's replicas)."""
        self._on_backlog = on_backlog
        """Told when requests keep queueing behind running calls (more replicas would help)."""
        self._queue: deque[tuple[Array, asyncio.Future[Prediction]]] = deque()
        self._running = 0
        self._drainers: set[asyncio.Task[Any]] = set()
        self.batches = 0
        self.rows = 0

    async def predict(self, rows: Array) -> Prediction:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Prediction] = loop.create_future()
        self._queue.append((rows, future))
        if self._running < self._parallel():  # one more call may run: start it
            self._running += 1
            drainer = loop.create_task(self._drain())
            self._drainers.add(drainer)
            drainer.add_done_callback(self._drainers.discard)
        return await future

    async def _drain(self) -> None:
        try:
            while self._queue:
                if self.max_wait_s and len(self._queue) == 1:
                    await asyncio.sleep(self.max_wait_s)
                if len(self._queue) > 1 and self._on_backlog is not None:
                    self._on_backlog()
                await self._run(self._take())
        finally:
            self._running -= 1

    def _take(self) -> list[tuple[Array, asyncio.Future[Prediction]]]:
        batch = [self._queue.popleft()]
        total = len(batch[0][0])
        while self._queue and total + len(self._queue[0][0]) <= self.max_rows:
            item = self._queue.popleft()
            batch.append(item)
            total += len(item[0])
        return [(rows, future) for rows, future in batch if not future.cancelled()]

    async def _run(self, batch: list[tuple[Array, asyncio.Future[Prediction]]]) -> None:
        if not batch:
            return
        if len(batch) == 1:
            rows, future = batch[0]
            await self._settle(future, self._call(rows))
            return
        merged = np.concatenate([rows for rows, _ in batch])
        try:
            prediction = await self._call(merged)
            parts = split(prediction, [len(rows) for rows, _ in batch])
        except Exception:
            for rows, future in batch:  # so each request gets its own answer or error
                if not future.done():  # its caller may have given up meanwhile
                    await self._settle(future, self._call(rows))
            return
        self.batches += 1
        self.rows += len(merged)
        for (_, future), part in zip(batch, parts, strict=True):
            if not future.done():
                future.set_result(part)

    @staticmethod
    async def _settle(future: asyncio.Future[Prediction], call: Awaitable[Prediction]) -> None:
        try:
            result = await call
        except Exception as exc:  # the caller sees the model's own error
            if not future.done():
                future.set_exception(exc)
            return
        if not future.done():
            future.set_result(result)


def split(prediction: Prediction, sizes: list[int]) -> list[Prediction]:
    """Cut a batch's prediction back into one per request, refusing a wrong row count."""
    values = np.asarray(prediction.values)
    total = sum(sizes)
    if values.ndim == 0 or values.shape[0] != total:
        raise ValueError(f"the model returned {values.shape} values for {total} rows")
    probs = prediction.probabilities
    if probs is not None and (probs.ndim != 2 or probs.shape[0] != total):
        raise ValueError("the model returned malformed probabilities")
    bounds = np.cumsum([0, *sizes])
    return [
        Prediction(values[a:b], probs[a:b] if probs is not None else None)
        for a, b in itertools.pairwise(bounds)
    ]
