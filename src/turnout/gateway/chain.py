"""The answer chain: champion (or challenger) -> failover version -> fallback value -> 503.

Each step gets what is left of the deployment's deadline. A version whose breaker is open,
or whose queue is full, is skipped at once rather than waited on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np

from turnout import tracing
from turnout.errors import ModelUnavailable, RunnerRestarting, TurnoutError
from turnout.gateway.breaker import Breaker, BreakerPolicy
from turnout.gateway.runner import Runner
from turnout.monitoring.stats import TrafficStats
from turnout.registry.flavors import Prediction
from turnout.registry.servable import Servable
from turnout.store.records import Role, RoutingConfig
from turnout.types import Array

Load = Callable[[str, int], Awaitable[Servable]]
FAILOVER_SHARE = 0.2
"""Part of a deployment's deadline kept for the failover version when the first one fails."""


@dataclass(frozen=True, slots=True)
class Attempt:
    """One step of the chain that did not answer: logged with its outcome."""

    version: int
    role: Role
    outcome: str  # error | timeout
    latency_ms: float
    """From the request's start to the failure."""
    error: str


@dataclass(frozen=True, slots=True)
class Answered:
    prediction: Prediction
    version: int
    role: Role
    failed: tuple[Attempt, ...] = ()
    """Steps that failed before this answer (a champion's timeout before the failover's)."""


class NoAnswer(ModelUnavailable):
    """No step answered and no fallback value is configured."""

    def __init__(self, message: str, failed: tuple[Attempt, ...]) -> None:
        super().__init__(message)
        self.failed = failed


class Overloaded(ModelUnavailable):
    """Too much work already waits for this version; skip it rather than queue."""


class TimedOut(ModelUnavailable):
    """The version did not answer within its share of the deadline."""


class Chain:
    def __init__(
        self,
        runner: Runner,
        stats: TrafficStats,
        load: Load,
        *,
        policy: BreakerPolicy,
        max_pending_rows: int,
    ) -> None:
        self.runner = runner
        self.stats = stats
        self._load = load
        self.policy = policy
        self.max_pending_rows = max_pending_rows
        self.breakers: dict[tuple[str, int], Breaker] = {}
        self._pending: dict[tuple[str, int], int] = {}

    def breaker(self, model: str, version: int) -> Breaker:
        key = (model, version)
        breaker = self.breakers.get(key)
        if breaker is None:
            breaker = self.breakers[key] = Breaker(self.policy)
        return breaker

    def snapshot(self) -> list[dict[str, object]]:
        """Every breaker that has seen traffic, for `deployments show` and /metrics."""
        return [
            {"model": model, "version": version, **breaker.snapshot()}
            for (model, version), breaker in sorted(self.breakers.items())
        ]

    async def answer(
        self,
        *,
        deployment: str,
        config: RoutingConfig,
        model: str,
        version: int,
        servable: Servable | None,
        role: Role,
        rows: Array,
        started: float,
        failure: str = "",
    ) -> Answered:
        """`servable` is None when the version could not even be loaded (`failure` says why)."""
        failed: list[Attempt] = []
        deadline = started + config.timeout_ms / 1000 if config.timeout_ms else None
        primary_deadline = deadline
        if deadline is not None and config.failover is not None:
            # the deadline is the caller's: keep a share of it for the failover to answer in
            primary_deadline = deadline - FAILOVER_SHARE * (deadline - started)
        if servable is not None:
            try:
                prediction = await self._try(deployment, servable, role, rows, primary_deadline)
                return Answered(prediction, version, role)
            except TurnoutError as first:
                failure = first.message
                failed.append(_attempt(version, role, first, started))
        elif failure:
            failed.append(Attempt(version, role, "error", _since(started), failure))
        failover = config.failover
        if failover is not None and failover != version:
            try:
                wait_s = None if deadline is None else max(deadline - time.perf_counter(), 0.0)
                backup = await asyncio.wait_for(self._load(model, failover), wait_s)
                prediction = await self._try(deployment, backup, Role.FAILOVER, rows, deadline)
                return Answered(prediction, failover, Role.FAILOVER, tuple(failed))
            except TurnoutError as second:
                failure += f"; failover {model}:{failover}: {second.message}"
                failed.append(_attempt(failover, Role.FAILOVER, second, started))
            except TimeoutError:
                message = f"failover {model}:{failover} is still loading"
                failure += f"; {message}"
                failed.append(Attempt(failover, Role.FAILOVER, "timeout", _since(started), message))
        if config.has_fallback:
            counter = self.stats.counter(deployment, version, Role.FALLBACK.value)
            counter.observe(_since(started))
            values = fallback_values(config.fallback, len(rows))
            if tracing.TRACER is not None:
                tracing.event("fallback", {"turnout.reason": failure})
            return Answered(Prediction(values), version, Role.FALLBACK, tuple(failed))
        raise NoAnswer(
            f"no model answered: {failure}; no fallback value is configured", tuple(failed)
        )

    async def _try(
        self,
        deployment: str,
        servable: Servable,
        role: Role,
        rows: Array,
        deadline: float | None,
    ) -> Prediction:
        tracer = tracing.TRACER
        if tracer is None:
            return await self._call(deployment, servable, role, rows, deadline)
        name = f"attempt {servable.record.model}:{servable.version}"
        attributes = {"turnout.version": servable.version, "turnout.role": role.value}
        with tracing.child_span(tracer, name, attributes):
            return await self._call(deployment, servable, role, rows, deadline)

    async def _call(
        self,
        deployment: str,
        servable: Servable,
        role: Role,
        rows: Array,
        deadline: float | None,
    ) -> Prediction:
        model, version = servable.record.model, servable.version
        key = (model, version)
        breaker = self.breaker(model, version)
        counter = self.stats.counter(deployment, version, role.value)
        if not breaker.allow():
            counter.rejected += 1
            raise ModelUnavailable(f"{model}:{version} is failing (circuit open)")
        pending = self._pending.get(key, 0)
        if pending and pending + len(rows) > self.max_pending_rows:
            # a batch larger than the limit still runs when nothing waits: the limit keeps
            # requests from queueing behind others, not batches from being sent
            counter.rejected += 1
            raise Overloaded(
                f"{model}:{version} is busy: {pending} rows wait and this request brings "
                f"{len(rows)}, past TURNOUT_MAX_PENDING_ROWS={self.max_pending_rows}"
            )
        remaining = None if deadline is None else deadline - time.perf_counter()
        if remaining is not None and remaining <= 0:
            raise TimedOut("the deadline passed before this step could start")
        self._pending[key] = pending + len(rows)
        began = time.perf_counter()
        try:
            prediction = await asyncio.wait_for(self.runner.predict(servable, rows), remaining)
        except TimeoutError:
            latency = (time.perf_counter() - began) * 1000
            breaker.record(False, latency)
            counter.timeouts += 1
            counter.observe(latency, ok=False)
            raise TimedOut(f"{model}:{version} timed out after {latency:.0f} ms") from None
        except RunnerRestarting:  # the crash that caused it was already counted
            counter.rejected += 1
            raise
        except TurnoutError:
            latency = (time.perf_counter() - began) * 1000
            breaker.record(False, latency)
            counter.observe(latency, ok=False)
            raise
        finally:
            self._pending[key] -= len(rows)
        latency = (time.perf_counter() - began) * 1000
        breaker.record(True, latency)
        counter.observe(latency)
        return prediction


def _since(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def _attempt(version: int, role: Role, error: TurnoutError, started: float) -> Attempt:
    outcome = "timeout" if isinstance(error, TimedOut) else "error"
    return Attempt(version, role, outcome, _since(started), error.message)


def fallback_values(value: object, n: int) -> Array:
    """The fallback value once per row, typed like the value (numbers stay numbers)."""
    if isinstance(value, bool | int | float | str):
        return np.full(n, value)
    values = np.empty(n, dtype=object)
    for i in range(n):
        values[i] = value
    return values
