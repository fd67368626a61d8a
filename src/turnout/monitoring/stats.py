"""Per-worker traffic counters, cheap to update on the hot path and to merge across workers.

Latencies go into fixed log-spaced buckets, so percentiles of several workers are computed
from summed histograms rather than averaged percentiles.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

import numpy as np

from turnout.types import JSON

# 0.05 ms .. ~60 s, 8 buckets per doubling
BOUNDS_MS: tuple[float, ...] = tuple(float(b) for b in 0.05 * 2 ** (np.arange(0, 20.1, 0.125)))


@dataclass(slots=True)
class Counter:
    requests: int = 0
    errors: int = 0
    timeouts: int = 0
    dropped: int = 0
    rejected: int = 0
    compared: int = 0
    agreed: int = 0
    latency_sum_ms: float = 0.0
    histogram: list[int] = field(default_factory=lambda: [0] * (len(BOUNDS_MS) + 1))

    def observe(self, latency_ms: float, *, ok: bool = True) -> None:
        self.requests += 1
        if not ok:
            self.errors += 1
        self.latency_sum_ms += latency_ms
        self.histogram[bisect.bisect_left(BOUNDS_MS, latency_ms)] += 1

    def to_dict(self) -> dict[str, JSON]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "timeouts": self.timeouts,
            "dropped": self.dropped,
            "rejected": self.rejected,
            "compared": self.compared,
            "agreed": self.agreed,
            "latency_sum_ms": self.latency_sum_ms,
            "histogram": {str(i): n for i, n in enumerate(self.histogram) if n},
        }


Key = tuple[str, int, str]  # deployment, version, role
COUNTS = ("requests", "errors", "timeouts", "dropped", "rejected", "compared", "agreed")


class TrafficStats:
    """Counters by (deployment, version, role) for this worker since it started."""

    def __init__(self) -> None:
        self.counters: dict[Key, Counter] = {}

    def counter(self, deployment: str, version: int, role: str) -> Counter:
        key = (deployment, version, role)
        counter = self.counters.get(key)
        if counter is None:
            counter = self.counters[key] = Counter()
        return counter

    def moved(self) -> tuple[int, float]:
        """Changes whenever any counter does: how many there are and everything they
        counted, summed (cheap next to encoding and storing them)."""
        total = 0.0
        for c in self.counters.values():
            total += c.requests + c.dropped + c.rejected + c.timeouts + c.compared
            total += c.latency_sum_ms
        return len(self.counters), total

    def snapshot(self) -> list[dict[str, JSON]]:
        return [
            {"deployment": d, "version": v, "role": r, **c.to_dict()}
            for (d, v, r), c in self.counters.items()
        ]


def merge(snapshots: list[dict[str, JSON]]) -> list[dict[str, JSON]]:
    """Sum counters of several workers and derive rates and latency percentiles."""
    merged: dict[tuple[str, int, str], dict[str, JSON]] = {}
    for item in snapshots:
        key = (item["deployment"], item["version"], item["role"])
        into = merged.setdefault(
            key,
            {"deployment": key[0], "version": key[1], "role": key[2], "histogram": {}}
            | dict.fromkeys(COUNTS, 0)
            | {"latency_sum_ms": 0.0},
        )
        for name in (*COUNTS, "latency_sum_ms"):
            into[name] += item.get(name, 0)
        for bucket, n in item.get("histogram", {}).items():
            into["histogram"][bucket] = into["histogram"].get(bucket, 0) + n
    return [
        _summary(m)
        for m in sorted(merged.values(), key=lambda m: (m["deployment"], m["version"], m["role"]))
    ]


def _summary(item: dict[str, JSON]) -> dict[str, JSON]:
    histogram = item.pop("histogram")
    requests = item["requests"]
    item["error_rate"] = item["errors"] / requests if requests else None
    item["agreement_rate"] = item["agreed"] / item["compared"] if item["compared"] else None
    item["latency_mean_ms"] = item["latency_sum_ms"] / requests if requests else None
    for q in (50, 95, 99):
        item[f"latency_p{q}_ms"] = _percentile(histogram, q / 100)
    return item


def _percentile(histogram: dict[str, int], q: float) -> float | None:
    total = sum(histogram.values())
    if not total:
        return None
    rank, seen = q * total, 0
    for bucket in sorted(histogram, key=int):
        seen += histogram[bucket]
        if seen >= rank:
            index = int(bucket)
            return BOUNDS_MS[min(index, len(BOUNDS_MS) - 1)]
    return BOUNDS_MS[-1]
