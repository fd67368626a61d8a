"""Drive a server with many timed calls: SDK calls from a thread pool, sequential one-row
requests, and random traffic over many deployments from concurrent connections.

Every call is timed on its own; a call that raises or answers wrongly is counted as a
failure with its message, never raised, so one bad deployment does not end a long run.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import httpx
import numpy as np
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from bench.fleet import Specimen

T = TypeVar("T")


def progress() -> Progress:
    return Progress(
        TextColumn("{task.description:<34}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )


def percentile_ms(latencies_s: Sequence[float], q: float) -> float | None:
    return float(np.percentile(latencies_s, q) * 1000) if latencies_s else None


@dataclass
class Calls(Generic[T]):
    """What a batch of calls did: their wall time, per-call latencies and results."""

    wall_s: float = 0.0
    latencies_s: list[float] = field(default_factory=list)
    results: list[T | None] = field(default_factory=list)
    """One per call, in order; None where it failed."""
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> int:
        return sum(r is not None for r in self.results)

    @property
    def per_s(self) -> float | None:
        return self.ok / self.wall_s if self.wall_s > 0 else None

    def __add__(self, later: Calls[T]) -> Calls[T]:
        """This batch and one run after it, as one."""
        return Calls(
            self.wall_s + later.wall_s,
            self.latencies_s + later.latencies_s,
            self.results + later.results,
            self.failures + later.failures,
        )

    def summary(self) -> dict[str, object]:
        tenth = max(1, len(self.latencies_s) // 10)
        return {
            "calls": len(self.results),
            "ok": self.ok,
            "failed": len(self.failures),
            "first_failures": self.failures[:5],
            "wall_s": round(self.wall_s, 3),
            "per_s": self.per_s,
            "p50_ms": percentile_ms(self.latencies_s, 50),
            "p99_ms": percentile_ms(self.latencies_s, 99),
            "max_ms": max(self.latencies_s, default=0.0) * 1000,
            "p50_ms_first_tenth": percentile_ms(self.latencies_s[:tenth], 50),
            "p50_ms_last_tenth": percentile_ms(self.latencies_s[-tenth:], 50),
        }


def _timed(call: Callable[[], T]) -> tuple[float, T | None, str | None]:
    started = time.perf_counter()
    try:
        result = call()
    except Exception as exc:  # a failed call is counted, and the run goes on
        return time.perf_counter() - started, None, f"{type(exc).__name__}: {exc}"
    return time.perf_counter() - started, result, None


def fan_out(calls: Sequence[Callable[[], T]], *, concurrency: int, description: str) -> Calls[T]:
    """Run `calls` on `concurrency` threads; results come back in the calls' order."""
    done: Calls[T] = Calls(results=[None] * len(calls))
    with progress() as bar, ThreadPoolExecutor(max_workers=concurrency) as pool:
        task = bar.add_task(description, total=len(calls))
        started = time.perf_counter()
        futures = [pool.submit(_timed, call) for call in calls]
        for index, future in enumerate(futures):
            latency, result, failure = future.result()
            done.latencies_s.append(latency)
            done.results[index] = result
            if failure is not None:
                done.failures.append(failure)
            bar.advance(task)
        done.wall_s = time.perf_counter() - started
    return done


def predict_path(deployment: str) -> str:
    return f"/v1/deployments/{deployment}/predict"


def _check(response: httpx.Response, specimen: Specimen) -> bool:
    """True when the answer is the model's; raises with the server's words when not."""
    if response.status_code != 200:
        raise RuntimeError(f"HTTP {response.status_code}: {response.text[:200]}")
    if not specimen.matches(response.json()):
        raise RuntimeError(f"wrong answer {response.text[:200]} (expected {specimen.label})")
    return True


def first_requests(
    http: httpx.Client, targets: Sequence[tuple[str, Specimen]], *, description: str
) -> Calls[bool]:
    """One checked request per deployment, one after another."""
    calls = [
        (
            lambda name=name, s=s: _check(
                http.post(predict_path(name), json={"instances": [s.row]}), s
            )
        )
        for name, s in targets
    ]
    return fan_out(calls, concurrency=1, description=description)


def warm_latencies(
    http: httpx.Client, name: str, specimen: Specimen, *, requests: int, warmup: int = 200
) -> list[float]:
    """Sequential checked requests to one deployment over one keep-alive connection."""
    body = {"instances": [specimen.row]}
    path = predict_path(name)
    for _ in range(warmup):
        _check(http.post(path, json=body), specimen)
    latencies = []
    for _ in range(requests):
        started = time.perf_counter()
        response = http.post(path, json=body)
        latencies.append(time.perf_counter() - started)
        _check(response, specimen)
    return latencies


@dataclass
class Traffic:
    """Random traffic over many deployments."""

    calls: Calls[bool]
    first_latencies_s: list[float]
    """Latency of each deployment's first request in this traffic (a cold load, unless the
    model was still loaded from before)."""


async def _traffic(
    url: str,
    targets: Sequence[tuple[str, Specimen]],
    order: list[int],
    *,
    concurrency: int,
    bar: Progress,
) -> Traffic:
    done: Calls[bool] = Calls(results=[None] * len(order))
    first_seen = {target: i for i, target in reversed(list(enumerate(order)))}
    first: list[float] = []
    task = bar.add_task(f"random traffic, {concurrency} connections", total=len(order))
    queue = iter(range(len(order)))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http:

        async def worker() -> None:
            for index in queue:
                name, specimen = targets[order[index]]
                started = time.perf_counter()
                try:
                    response = await http.post(
                        predict_path(name), json={"instances": [specimen.row]}
                    )
                    latency = time.perf_counter() - started
                    done.results[index] = _check(response, specimen)
                except Exception as exc:  # counted, and the traffic goes on
                    latency = time.perf_counter() - started
                    done.failures.append(f"{name}: {type(exc).__name__}: {exc}")
                done.latencies_s.append(latency)
                if first_seen[order[index]] == index:
                    first.append(latency)
                bar.advance(task)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        done.wall_s = time.perf_counter() - started
    return Traffic(done, first)


def random_traffic(
    url: str,
    targets: Sequence[tuple[str, Specimen]],
    *,
    requests: int,
    concurrency: int,
    seed: int,
) -> Traffic:
    """`requests` checked requests, each to a deployment drawn uniformly at random."""
    rng = random.Random(seed)
    order = [rng.randrange(len(targets)) for _ in range(requests)]
    with progress() as bar:
        return asyncio.run(_traffic(url, targets, order, concurrency=concurrency, bar=bar))
