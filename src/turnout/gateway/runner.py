"""Runs model code off the event loop and checks what comes back."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import numpy as np

from turnout.errors import ModelUnavailable
from turnout.gateway.batcher import Batcher, Call
from turnout.registry.flavors import Prediction
from turnout.registry.servable import Servable
from turnout.types import Array


class Runner(Protocol):
    """Where model code runs: threads of this worker, or supervised processes."""

    async def predict(self, servable: Servable, rows: Array) -> Prediction: ...

    async def keep_only(self, keys: set[tuple[str, int]]) -> None: ...

    async def close(self) -> None: ...


class InProcessRunner:
    """Calls `predict` in a small thread pool of this worker (trusted models), batching
    concurrent requests per version."""

    def __init__(self, threads: int, *, max_batch_rows: int = 64, inline: bool = False) -> None:
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="predict")
        self._batchers: dict[tuple[str, int], Batcher] = {}
        self.max_batch_rows = max_batch_rows
        self.inline = inline

    def _batcher(self, servable: Servable) -> Batcher:
        key = (servable.record.model, servable.version)
        batcher = self._batchers.get(key)
        if batcher is None:
            batcher = Batcher(self._caller(servable), max_rows=self.max_batch_rows)
            self._batchers[key] = batcher
        return batcher

    def _caller(self, servable: Servable) -> Call:
        if self.inline:

            async def inline(rows: Array) -> Prediction:
                return servable.predict(rows)

            return inline

        async def threaded(rows: Array) -> Prediction:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, servable.predict, rows)

        return threaded

    async def keep_only(self, keys: set[tuple[str, int]]) -> None:
        """Forget batchers of unloaded versions (queued requests still finish)."""
        for key in list(self._batchers):
            if key not in keys:
                del self._batchers[key]

    async def predict(self, servable: Servable, rows: Array) -> Prediction:
        try:
            prediction = await self._batcher(servable).predict(rows)
        except Exception as exc:  # a model may raise anything
            raise ModelUnavailable(
                f"model {servable.record.ref} failed: {type(exc).__name__}: {exc}"
            ) from exc
        return checked(prediction, servable, len(rows))

    async def close(self) -> None:
        # a hung model's thread never returns; waiting for it would block shutdown forever
        self._executor.shutdown(wait=False, cancel_futures=True)


def checked(prediction: Prediction, servable: Servable, n_rows: int) -> Prediction:
    """Refuse answers that do not have one value per row or are not JSON-able."""
    values = np.asarray(prediction.values)
    if values.ndim == 0 or values.shape[0] != n_rows:
        raise ModelUnavailable(
            f"model {servable.record.ref} returned {values.shape} values for {n_rows} rows"
        )
    if values.dtype.kind == "O":
        bad = next((v for v in values.ravel() if not isinstance(v, str | int | float | bool)), None)
        if bad is not None:
            raise ModelUnavailable(
                f"model {servable.record.ref} returned a {type(bad).__name__}, not a value"
            )
    probs = prediction.probabilities
    if probs is not None and (probs.ndim != 2 or probs.shape[0] != n_rows):
        raise ModelUnavailable(f"model {servable.record.ref} returned malformed probabilities")
    return Prediction(values, probs)
