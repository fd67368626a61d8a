"""`/metrics` for the whole gateway: the traffic counters of every live worker, summed.

A scrape reaches whichever worker the server hands it to, so the answer is built from the
heartbeat rows that all workers write, not from the answering process alone.

Counters only grow while the same workers live. A worker that leaves the live set (it exits,
restarts, or misses heartbeats for a few seconds) takes its counts with it and a restarted
worker starts again from zero, so the sums can fall: Prometheus treats that as a counter reset,
which `rate()` and `increase()` already handle.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from turnout.monitoring.stats import BOUNDS_MS, COUNTS, Counter
from turnout.store.records import Role, WorkerRecord
from turnout.types import JSON

PER_DOUBLING = 8
"""Fine latency buckets per doubling in `BOUNDS_MS`; Prometheus gets one bucket per doubling,
so each of its cumulative counts is an exact sum of fine buckets."""

LE_INDEXES: tuple[int, ...] = tuple(range(0, len(BOUNDS_MS), PER_DOUBLING))
LE_SECONDS: tuple[float, ...] = tuple(BOUNDS_MS[i] / 1000 for i in LE_INDEXES)
LE_LABELS: tuple[str, ...] = tuple(repr(s) for s in LE_SECONDS)

Key = tuple[str, str, str]
"""deployment, version, role: label values of one traffic series."""


@dataclass(frozen=True, slots=True)
class WorkerSnapshot:
    """The part of one worker's heartbeat that `/metrics` sums."""

    id: str
    stats: list[dict[str, JSON]] = field(default_factory=list)
    """`TrafficStats.snapshot()`."""
    breakers: list[dict[str, JSON]] = field(default_factory=list)
    """One entry per circuit breaker: model, version, state, ..."""
    logging: dict[str, JSON] = field(default_factory=dict)
    """The prediction logger's rows buffered, written and dropped."""

    @classmethod
    def of(cls, record: WorkerRecord) -> WorkerSnapshot:
        return cls(record.id, record.stats, record.breakers, record.logging)

    @classmethod
    def from_report(cls, report: Mapping[str, Any]) -> WorkerSnapshot:
        """From the keyword arguments a worker's heartbeat writes (`Heartbeat.payload()`)."""
        return cls(
            report["worker_id"],
            list(report.get("stats") or []),
            list(report.get("breakers") or []),
            dict(report.get("logging") or {}),
        )


def _nobody() -> WorkerSnapshot | None:
    return None


class FleetCollector(Collector):
    """Prometheus families summed over the live gateway workers.

    `workers` returns the heartbeat rows of the live workers. `local` returns the answering
    worker's own counters as they are now: when it is the only live worker they replace its
    row, which may be a second old, so a scrape right after a request counts it. With several
    workers every scrape sums the rows alone, whichever worker answers it; mixing one
    worker's live counters with the others' rows would let consecutive scrapes, answered by
    different workers, go backwards.
    """

    def __init__(
        self,
        workers: Callable[[], list[WorkerRecord]],
        local: Callable[[], WorkerSnapshot | None] = _nobody,
    ) -> None:
        self._workers = workers
        self._local = local

    def fleet(self) -> list[WorkerSnapshot]:
        """The workers whose counters this scrape sums."""
        rows = [WorkerSnapshot.of(w) for w in self._workers()]
        me = self._local()
        if me is not None and all(row.id == me.id for row in rows):
            return [me]
        return rows

    def pinned(self) -> FleetCollector:
        """This collector with the local counters read now, on the thread that updates them,
        so the rest of the scrape can run on another thread."""
        now = self._local()
        return FleetCollector(self._workers, lambda: now)

    def collect(self) -> Iterator[Metric]:
        workers = self.fleet()
        traffic = _traffic(workers)
        yield _predictions(traffic)
        yield _latency(traffic)
        yield _rejected(traffic)
        yield from _shadows(traffic)
        yield from _logging(workers)
        yield _breakers(workers)
        yield GaugeMetricFamily(
            "turnout_gateway_workers", "Live gateway worker processes.", value=len(workers)
        )


def render(collector: Collector) -> tuple[bytes, str]:
    """The Prometheus text exposition of `collector` alone, and its content type."""
    registry = CollectorRegistry()
    registry.register(collector)
    return generate_latest(registry), CONTENT_TYPE_LATEST


async def scrape(collector: FleetCollector) -> tuple[bytes, str]:
    """Render from an event-loop route: the worker's own counters are read on the loop that
    updates them, the database and the formatting run on a thread."""
    return await asyncio.to_thread(render, collector.pinned())


# -- sums ------------------------------------------------------------------------------------


def _traffic(workers: Iterable[WorkerSnapshot]) -> dict[Key, Counter]:
    totals: dict[Key, Counter] = {}
    for worker in workers:
        for item in worker.stats:
            key = (str(item["deployment"]), str(item["version"]), str(item["role"]))
            _add(totals.setdefault(key, Counter()), item)
    return dict(sorted(totals.items()))


def _add(into: Counter, item: Mapping[str, JSON]) -> None:
    for name in COUNTS:
        setattr(into, name, getattr(into, name) + int(item.get(name) or 0))
    into.latency_sum_ms += float(item.get("latency_sum_ms") or 0.0)
    last = len(into.histogram) - 1
    for bucket, n in (item.get("histogram") or {}).items():
        into.histogram[min(int(bucket), last)] += int(n)


def _total(workers: Iterable[WorkerSnapshot], name: str) -> int:
    return sum(int(w.logging.get(name) or 0) for w in workers)


# -- families --------------------------------------------------------------------------------


def _outcomes(role: str, counter: Counter) -> list[tuple[str, int]]:
    """Answers by outcome; `errors` includes timeouts. Zero series are left out, except ok."""
    if role == Role.FALLBACK:
        return [("fallback", counter.requests)]
    outcomes = [
        ("ok", counter.requests - counter.errors),
        ("error", counter.errors - counter.timeouts),
        ("timeout", counter.timeouts),
    ]
    return [(outcome, n) for outcome, n in outcomes if n or outcome == "ok"]


def _predictions(traffic: Mapping[Key, Counter]) -> Metric:
    family = CounterMetricFamily(
        "turnout_predictions_total",
        "Predictions answered, by deployment, version, role and outcome.",
        labels=["deployment", "version", "role", "outcome"],
    )
    for key, counter in traffic.items():
        for outcome, n in _outcomes(key[2], counter):
            family.add_metric([*key, outcome], n)
    return family


def _buckets(counter: Counter) -> list[tuple[str, float]]:
    cumulative = list(accumulate(counter.histogram))
    fine = [(le, float(cumulative[i])) for le, i in zip(LE_LABELS, LE_INDEXES, strict=True)]
    return [*fine, ("+Inf", float(counter.requests))]


def _latency(traffic: Mapping[Key, Counter]) -> Metric:
    family = HistogramMetricFamily(
        "turnout_prediction_latency_seconds",
        "Time to answer, by deployment, version and role.",
        labels=["deployment", "version", "role"],
    )
    for key, counter in traffic.items():
        family.add_metric(list(key), _buckets(counter), counter.latency_sum_ms / 1000)
    return family


def _rejected(traffic: Mapping[Key, Counter]) -> Metric:
    family = CounterMetricFamily(
        "turnout_requests_rejected_total",
        "Calls refused before reaching the model: circuit open or too many rows waiting.",
        labels=["deployment", "version", "role"],
    )
    for key, counter in traffic.items():
        if counter.rejected:
            family.add_metric(list(key), counter.rejected)
    return family


def _shadows(traffic: Mapping[Key, Counter]) -> Iterator[Metric]:
    dropped = CounterMetricFamily(
        "turnout_shadow_dropped_total",
        "Copies of live requests a shadow never received because its queue was full.",
        labels=["deployment", "version"],
    )
    agreement = CounterMetricFamily(
        "turnout_shadow_agreement_total",
        "Shadow answers compared with the champion's, by whether they agreed.",
        labels=["deployment", "version", "result"],
    )
    for (deployment, version, role), counter in traffic.items():
        if role != Role.SHADOW:
            continue
        dropped.add_metric([deployment, version], counter.dropped)
        agreement.add_metric([deployment, version, "agreed"], counter.agreed)
        agreement.add_metric([deployment, version, "disagreed"], counter.compared - counter.agreed)
    yield dropped
    yield agreement


def _logging(workers: list[WorkerSnapshot]) -> Iterator[Metric]:
    rows = CounterMetricFamily(
        "turnout_prediction_log_rows_total",
        "Predictions the log wrote to segments, or dropped because the store fell behind.",
        labels=["state"],
    )
    for state in ("written", "dropped"):
        rows.add_metric([state], _total(workers, state))
    yield rows
    yield GaugeMetricFamily(
        "turnout_prediction_log_buffered_rows",
        "Predictions held in memory, waiting to be written.",
        value=_total(workers, "buffered"),
    )


def _breakers(workers: Iterable[WorkerSnapshot]) -> Metric:
    open_in: dict[tuple[str, str], int] = {}
    for worker in workers:
        for breaker in worker.breakers:
            key = (str(breaker["model"]), str(breaker["version"]))
            open_in[key] = open_in.get(key, 0) + (breaker.get("state") == "open")
    family = GaugeMetricFamily(
        "turnout_breaker_open",
        "Workers whose circuit breaker for this model version is open (refusing calls).",
        labels=["model", "version"],
    )
    for key, n in sorted(open_in.items()):
        family.add_metric(list(key), n)
    return family
