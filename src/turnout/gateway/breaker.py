"""A circuit breaker per model version: stop sending traffic to a version that keeps failing.

Pure bookkeeping on one event-loop thread: the gateway asks `allow()` before a call and
reports the outcome with `record()`; the breaker never does I/O and never sleeps.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

Clock = Callable[[], float]
"""Seconds from an arbitrary origin that never goes backwards (`time.monotonic`)."""

MAX_OUTCOMES = 10_000
"""Memory bound for one window: at very high rates the oldest outcomes go first."""


class BreakerState(StrEnum):
    CLOSED = "closed"
    """Traffic flows; outcomes are counted in the sliding window."""
    OPEN = "open"
    """Traffic is refused until `open_s` has passed."""
    HALF_OPEN = "half_open"
    """A few probe calls go through to test whether the version has recovered."""


class Event(StrEnum):
    TRIPPED = "tripped"
    COOLED_DOWN = "cooled_down"
    PROBE_FAILED = "probe_failed"
    PROBES_PASSED = "probes_passed"


TRANSITIONS: dict[tuple[BreakerState, Event], BreakerState] = {
    (BreakerState.CLOSED, Event.TRIPPED): BreakerState.OPEN,
    (BreakerState.OPEN, Event.COOLED_DOWN): BreakerState.HALF_OPEN,
    (BreakerState.HALF_OPEN, Event.PROBE_FAILED): BreakerState.OPEN,
    (BreakerState.HALF_OPEN, Event.PROBES_PASSED): BreakerState.CLOSED,
}


@dataclass(frozen=True)
class BreakerPolicy:
    window_s: float = 30.0
    """Outcomes older than this no longer count towards the failure rate."""
    min_calls: int = 20
    """The breaker never opens on fewer calls than this in the window."""
    failure_rate: float = 0.5
    """Open when failures / calls in the window reaches this."""
    open_s: float = 5.0
    """How long to refuse traffic before letting probes through."""
    probes: int = 3
    """Probe calls that must succeed to close again; also the most in flight at once."""
    slow_ms: float | None = None
    """A call slower than this counts as a failure; None ignores latency."""

    def __post_init__(self) -> None:
        if self.window_s <= 0 or self.open_s < 0:
            raise ValueError("window_s must be positive and open_s not negative")
        if self.min_calls < 1 or self.probes < 1:
            raise ValueError("min_calls and probes must be at least 1")
        if not 0 < self.failure_rate <= 1:
            raise ValueError("failure_rate must be in (0, 1]")

    def failed(self, ok: bool, latency_ms: float) -> bool:
        """Whether an outcome counts against the version: an error, or too slow."""
        too_slow = self.slow_ms is not None and latency_ms > self.slow_ms
        return not ok or too_slow


class _Window:
    """Outcomes of the last `span_s` seconds, with a running failure count."""

    def __init__(self, span_s: float) -> None:
        self.span_s = span_s
        self._outcomes: deque[tuple[float, bool]] = deque()
        self.failures = 0

    @property
    def calls(self) -> int:
        return len(self._outcomes)

    def add(self, now: float, failed: bool) -> None:
        if len(self._outcomes) >= MAX_OUTCOMES:
            self._pop()
        self._outcomes.append((now, failed))
        self.failures += failed

    def prune(self, now: float) -> None:
        while self._outcomes and now - self._outcomes[0][0] >= self.span_s:
            self._pop()

    def clear(self) -> None:
        self._outcomes.clear()
        self.failures = 0

    def _pop(self) -> None:
        _, failed = self._outcomes.popleft()
        self.failures -= failed


class Breaker:
    """One version's breaker. Call `allow()` before each call and `record()` after it.

    Outcomes that arrive while OPEN (calls admitted before it opened) are ignored. In
    HALF_OPEN an outcome counts as a probe result only while a probe is in flight; the
    breaker cannot tell a probe from a late straggler, so a straggler may stand in for one.
    """

    def __init__(self, policy: BreakerPolicy, *, clock: Clock = time.monotonic) -> None:
        self.policy = policy
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._window = _Window(policy.window_s)
        self._opened_at: float | None = None
        self._probes_in_flight = 0
        self._probes_passed = 0
        self.opened_total = 0
        self.rejected_total = 0

    @property
    def state(self) -> BreakerState:
        self._cool_down(self._clock())
        return self._state

    def allow(self) -> bool:
        """Whether to send this call; a True in HALF_OPEN admits a probe."""
        now = self._clock()
        self._cool_down(now)
        self._window.prune(now)
        admitted = self._admit()
        self.rejected_total += not admitted
        return admitted

    def record(self, ok: bool, latency_ms: float) -> None:
        """Report how an admitted call went."""
        now = self._clock()
        failed = self.policy.failed(ok, latency_ms)
        self._window.prune(now)
        if self._state is BreakerState.CLOSED:
            self._record_closed(now, failed)
        elif self._state is BreakerState.HALF_OPEN and self._probes_in_flight:
            self._record_probe(now, failed)

    def snapshot(self) -> dict[str, Any]:
        """Counters for metrics and the admin API."""
        now = self._clock()
        self._cool_down(now)
        self._window.prune(now)
        return {
            "state": self._state.value,
            "calls": self._window.calls,
            "failures": self._window.failures,
            "opened_age_s": None if self._opened_at is None else now - self._opened_at,
            "probes_in_flight": self._probes_in_flight,
            "opened_total": self.opened_total,
            "rejected_total": self.rejected_total,
        }

    def _admit(self) -> bool:
        if self._state is BreakerState.CLOSED:
            return True
        if self._state is BreakerState.HALF_OPEN and self._probes_in_flight < self.policy.probes:
            self._probes_in_flight += 1
            return True
        return False

    def _record_closed(self, now: float, failed: bool) -> None:
        self._window.add(now, failed)
        calls, failures = self._window.calls, self._window.failures
        if calls >= self.policy.min_calls and failures / calls >= self.policy.failure_rate:
            self._fire(Event.TRIPPED, now)

    def _record_probe(self, now: float, failed: bool) -> None:
        self._probes_in_flight -= 1
        if failed:
            self._fire(Event.PROBE_FAILED, now)
            return
        self._probes_passed += 1
        if self._probes_passed >= self.policy.probes:
            self._fire(Event.PROBES_PASSED, now)

    def _cool_down(self, now: float) -> None:
        if self._state is BreakerState.OPEN and self._open_for(now) >= self.policy.open_s:
            self._fire(Event.COOLED_DOWN, now)

    def _open_for(self, now: float) -> float:
        return 0.0 if self._opened_at is None else now - self._opened_at

    def _fire(self, event: Event, now: float) -> None:
        """Move along the transition table and reset what the new state starts from."""
        self._state = TRANSITIONS[(self._state, event)]
        self._probes_in_flight = 0
        self._probes_passed = 0
        if self._state is BreakerState.OPEN:
            self._opened_at = now
            self.opened_total += 1
        elif self._state is BreakerState.CLOSED:
            self._window.clear()
