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
from dataclasses import dataclass
from typing import Any

import numpy as np

from turnout import tracing
from turnout.gateway.batcher import split
from turnout.gateway.runner import Runner
from turnout.monitoring.predlog import LogEntry, PredictionLogger
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
    decode: Callable[[Signature], Array]
    """Decodes the request again for a shadow whose signature differs."""
    champion: Prediction
    revision: int = 0
    ids: tuple[str, ...] | list[str] = ()
    """The live answer's prediction ids: a shadow's answer is logged under the same ids."""
    payloads: bool = False
    """Whether inputs and outputs are logged for this request."""
    trace: Any = None
    """The live request's span context when tracing is on: the copy's span links to it."""


class ShadowMirror:
    def __init__(
        self,
        stats: TrafficStats,
        load: Callable[[str, int], Awaitable[Servable]],
        runner: Runner,
        *,
        queue_size: int = 1000,
        concurrency: int = 2,
        timeout_s: float = 10.0,
        max_batch_rows: int = 64,
        linger_ms: float = 2.0,
        logger: PredictionLogger | None = None,
    ) -> None:
        """`runner` is the shadows' own (a small thread pool, or low-priority processes),
        never the one live traffic uses."""
        self.stats = stats
        self._load = load
        self._runner = runner
        self._queue: asyncio.Queue[ShadowJob] = asyncio.Queue(maxsize=queue_size)
        self._slots = asyncio.Semaphore(concurrency)
        self._timeout_s = timeout_s
        self.max_batch_rows = max_batch_rows
        self.linger_s = linger_ms / 1000
        """How long a copy waits for others to share its `predict`: nobody waits on a shadow's
        answer, so a few milliseconds buy far fewer calls to the model under load."""
        self.logger = logger
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
        await self._runner.close()

    async def _run(self) -> None:
        """Take work only when a shadow thread is free; while all are busy (a slow shadow)
        the queue fills and further copies are dropped at `submit`, costing callers nothing.
        Copies waiting for the same version, and those arriving within the linger, are merged
        into one `predict`."""
        while True:
            await self._slots.acquire()
            batch = [await self._queue.get()]
            if self.linger_s and self._queue.qsize() < self.max_batch_rows:
                await asyncio.sleep(self.linger_s)
            key = (batch[0].deployment, batch[0].version)
            rows = len(batch[0].rows)
            for _ in range(self._queue.qsize()):
                if rows >= self.max_batch_rows:
                    break
                job = self._queue.get_nowait()
                if (job.deployment, job.version) == key:
                    batch.append(job)
                    rows += len(job.rows)
                else:  # another shadow's copy: back in line, there is room since we took one
                    self._queue.put_nowait(job)
            task = asyncio.create_task(self._shadow(batch))
            task.add_done_callback(lambda _: self._slots.release())

    async def _shadow(self, batch: list[ShadowJob]) -> None:
        tracer = tracing.TRACER
        if tracer is None:
            return await self._mirror(batch)
        first = batch[0]
        with tracing.linked_span(
            tracer,
            f"shadow {first.model}:{first.version}",
            [job.trace for job in batch],
            {"turnout.deployment": first.deployment, "turnout.version": first.version,
             "turnout.role": "shadow", "turnout.requests": len(batch)},
        ):  # fmt: skip
            return await self._mirror(batch)

    async def _mirror(self, batch: list[ShadowJob]) -> None:
        first = batch[0]
        counter = self.stats.counter(first.deployment, first.version, Role.SHADOW.value)
        started = time.perf_counter()
        parts: list[Array] = []
        tensors: tuple[Any, ...] = ()  # the shadow's own inputs, once it is loaded
        try:
            servable = await self._load(first.model, first.version)
            tensors = servable.signature.tensors
            parts = [
                job.rows if servable.signature == job.signature else job.decode(servable.signature)
                for job in batch
            ]
            merged = np.concatenate(parts) if len(parts) > 1 else parts[0]
            prediction = await asyncio.wait_for(
                self._runner.predict(servable, merged), self._timeout_s
            )
            predictions = split(prediction, [len(p) for p in parts])
        except TimeoutError:
            elapsed_ms = (time.perf_counter() - started) * 1000
            for _ in batch:
                counter.timeouts += 1
                counter.observe(elapsed_ms, ok=False)
            self._log(batch, parts, tensors, None, elapsed_ms, "timeout",
                      f"no answer in {self._timeout_s:g} s")  # fmt: skip
            return
        except Exception as exc:  # a shadow may fail in any way; it never matters to callers
            log.debug("shadow %s:%s failed: %s", first.model, first.version, exc)
            elapsed_ms = (time.perf_counter() - started) * 1000
            for _ in batch:
                counter.observe(elapsed_ms, ok=False)
            failure = str(exc) or type(exc).__name__
            self._log(batch, parts, tensors, None, elapsed_ms, "error", failure)
            return
        elapsed_ms = (time.perf_counter() - started) * 1000
        for job, prediction in zip(batch, predictions, strict=True):
            counter.observe(elapsed_ms)
            agreed, compared = agreement(job.champion, prediction)
            counter.agreed += agreed
            counter.compared += compared
        self._log(batch, parts, tensors, predictions, elapsed_ms, "ok", None)

    def _log(
        self,
        batch: list[ShadowJob],
        parts: list[Array],
        tensors: tuple[Any, ...],
        predictions: list[Prediction] | None,
        elapsed_ms: float,
        outcome: str,
        error: str | None,
    ) -> None:
        """Shadow answers go into the prediction log under the live answer's ids."""
        logger = self.logger
        if logger is None:
            return
        now = time.time()
        for i, job in enumerate(batch):
            decoded = i < len(parts)  # for the shadow's own signature, else as the live answer's
            rows = parts[i] if decoded else job.rows
            inputs = tensors if decoded else job.signature.tensors
            prediction = predictions[i] if predictions is not None else None
            logger.record(
                LogEntry(
                    job.deployment, job.revision, job.model, job.version, Role.SHADOW.value,
                    list(job.ids), now, elapsed_ms, outcome,
                    rows if job.payloads else None,
                    prediction if job.payloads else None, error, inputs,
                )
            )  # fmt: skip


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
