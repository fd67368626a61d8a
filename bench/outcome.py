"""What one benchmarked configuration produced: a wrk load per connection count, or why not."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from bench.wrk import Load


@dataclass
class Outcome:
    """One server configuration measured at several connection counts."""

    key: str
    label: str
    turnout: bool = False
    loads: dict[int, Load] = field(default_factory=dict)
    command: str = ""
    failure: str | None = None
    notes: list[str] = field(default_factory=list)
    not_run: dict[int, str] = field(default_factory=dict)
    """Connection counts deliberately left out, with the reason shown in the table."""
    baseline: Load | None = None
    """The same server without the feature under test, run in alternation (shadow check)."""

    def at(self, connections: int) -> Load | None:
        return self.loads.get(connections)


@dataclass(frozen=True)
class Pilot:
    """A short probe that picks a peer's worker setting before its measured runs."""

    peer: str
    setting: str
    load: Load | None
    failure: str | None = None


def best(outcomes: list[Outcome], connections: int) -> Outcome | None:
    """The outcome with the highest throughput at `connections` (None if none ran there)."""
    ran = [o for o in outcomes if o.at(connections) is not None]
    return max(ran, key=lambda o: o.loads[connections].rps, default=None)


def median_load(loads: list[Load]) -> Load:
    """Several runs of one configuration as one row: medians of rates and latencies."""
    return Load(
        connections=loads[0].connections,
        requests=sum(x.requests for x in loads),
        rps=statistics.median(x.rps for x in loads),
        p50_ms=statistics.median(x.p50_ms for x in loads),
        p90_ms=statistics.median(x.p90_ms for x in loads),
        p99_ms=statistics.median(x.p99_ms for x in loads),
        errors=sum(x.errors for x in loads),
        raw="",
    )
