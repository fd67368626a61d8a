"""The circuit breaker as a state machine, driven by a clock the test moves by hand."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from turnout.gateway.breaker import MAX_OUTCOMES, Breaker, BreakerPolicy, BreakerState

POLICY = BreakerPolicy(window_s=30.0, min_calls=4, failure_rate=0.5, open_s=5.0, probes=2)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def breaker(clock: FakeClock, policy: BreakerPolicy = POLICY) -> Breaker:
    return Breaker(policy, clock=clock)


def calls(b: Breaker, *outcomes: bool, latency_ms: float = 1.0) -> None:
    for ok in outcomes:
        assert b.allow()
        b.record(ok, latency_ms)


def tripped(clock: FakeClock, policy: BreakerPolicy = POLICY) -> Breaker:
    b = breaker(clock, policy)
    calls(b, *[False] * policy.min_calls)
    assert b.state is BreakerState.OPEN
    return b


def half_open(clock: FakeClock) -> Breaker:
    b = tripped(clock)
    clock.now += POLICY.open_s
    assert b.state is BreakerState.HALF_OPEN
    return b


# Closed: counting outcomes in the window


def test_stays_closed_below_min_calls_even_when_everything_fails(clock: FakeClock) -> None:
    b = breaker(clock)
    calls(b, *[False] * (POLICY.min_calls - 1))
    assert b.state is BreakerState.CLOSED
    assert b.snapshot()["failures"] == POLICY.min_calls - 1


def test_opens_when_the_rate_reaches_the_threshold_exactly(clock: FakeClock) -> None:
    b = breaker(clock)
    calls(b, True, True, False)
    assert b.state is BreakerState.CLOSED
    calls(b, False)  # 2 of 4 failed: exactly 0.5
    assert b.state is BreakerState.OPEN


def test_stays_closed_below_the_threshold(clock: FakeClock) -> None:
    b = breaker(clock)
    calls(b, *[True, True, False] * 10)  # a third fail
    assert b.state is BreakerState.CLOSED
    assert b.snapshot()["calls"] == 30
    assert b.snapshot()["failures"] == 10


def test_outcomes_older_than_the_window_stop_counting(clock: FakeClock) -> None:
    b = breaker(clock)
    calls(b, False, False, False)
    clock.now += POLICY.window_s
    calls(b, False)
    assert b.state is BreakerState.CLOSED
    assert b.snapshot()["calls"] == 1
    assert b.snapshot()["failures"] == 1


def test_the_window_forgets_on_allow_too(clock: FakeClock) -> None:
    b = breaker(clock)
    calls(b, False, False)
    clock.now += POLICY.window_s
    assert b.allow()
    assert b.snapshot()["calls"] == 0


def test_slow_successes_count_as_failures(clock: FakeClock) -> None:
    b = breaker(clock, BreakerPolicy(min_calls=4, slow_ms=100.0))
    calls(b, True, True, latency_ms=100.0)  # at the limit is not slow
    calls(b, True, latency_ms=100.1)
    assert b.state is BreakerState.CLOSED
    calls(b, True, latency_ms=250.0)
    assert b.state is BreakerState.OPEN


def test_latency_is_ignored_without_slow_ms(clock: FakeClock) -> None:
    b = breaker(clock)
    calls(b, *[True] * 10, latency_ms=60_000.0)
    assert b.state is BreakerState.CLOSED
    assert b.snapshot()["failures"] == 0


def test_the_window_keeps_a_bounded_number_of_outcomes(clock: FakeClock) -> None:
    b = breaker(clock, BreakerPolicy(min_calls=1))
    for _ in range(MAX_OUTCOMES + 5):
        b.record(True, 1.0)
    assert b.snapshot()["calls"] == MAX_OUTCOMES


# Open: refusing traffic


def test_open_refuses_calls_and_counts_them(clock: FakeClock) -> None:
    b = tripped(clock)
    assert [b.allow() for _ in range(3)] == [False, False, False]
    assert b.snapshot()["rejected_total"] == 3


def test_outcomes_of_calls_admitted_before_opening_are_ignored(clock: FakeClock) -> None:
    b = tripped(clock)
    b.record(True, 1.0)
    b.record(False, 1.0)
    clock.now += POLICY.open_s
    assert b.state is BreakerState.HALF_OPEN
    assert b.snapshot()["probes_in_flight"] == 0


def test_stays_open_until_open_s_has_passed(clock: FakeClock) -> None:
    b = tripped(clock)
    clock.now += POLICY.open_s - 0.001
    assert b.state is BreakerState.OPEN
    assert not b.allow()
    clock.now += 0.001
    assert b.state is BreakerState.HALF_OPEN


# Half-open: probing


def test_half_open_admits_at_most_probes_calls_at_once(clock: FakeClock) -> None:
    b = tripped(clock)
    clock.now += POLICY.open_s
    assert [b.allow() for _ in range(4)] == [True, True, False, False]
    assert b.snapshot()["probes_in_flight"] == POLICY.probes
    assert b.snapshot()["rejected_total"] == 2


def test_a_returned_probe_frees_its_slot(clock: FakeClock) -> None:
    b = half_open(clock)
    assert b.allow()
    assert b.allow()
    b.record(True, 1.0)
    assert b.allow()
    assert not b.allow()


def test_passing_probes_close_with_a_fresh_window(clock: FakeClock) -> None:
    b = half_open(clock)
    calls(b, True, True)
    assert b.state is BreakerState.CLOSED
    assert b.snapshot()["calls"] == 0
    calls(b, False)  # the four failures that tripped it are still younger than window_s
    assert b.state is BreakerState.CLOSED
    assert b.snapshot()["failures"] == 1


def test_a_failed_probe_reopens_and_restarts_the_timer(clock: FakeClock) -> None:
    b = half_open(clock)
    assert b.allow()
    clock.now += 1.0
    b.record(False, 1.0)
    assert b.state is BreakerState.OPEN
    assert b.snapshot()["opened_age_s"] == 0.0
    clock.now += POLICY.open_s - 0.5
    assert b.state is BreakerState.OPEN
    clock.now += 0.5
    assert b.state is BreakerState.HALF_OPEN


def test_a_slow_probe_is_a_failed_probe(clock: FakeClock) -> None:
    policy = BreakerPolicy(min_calls=2, open_s=1.0, probes=1, slow_ms=50.0)
    b = tripped(clock, policy)
    clock.now += policy.open_s
    calls(b, True, latency_ms=80.0)
    assert b.state is BreakerState.OPEN


def test_stray_outcomes_without_a_probe_in_flight_are_ignored(clock: FakeClock) -> None:
    b = half_open(clock)
    b.record(False, 1.0)
    assert b.state is BreakerState.HALF_OPEN


def test_opened_total_counts_every_opening(clock: FakeClock) -> None:
    b = half_open(clock)
    calls(b, False)
    clock.now += POLICY.open_s
    calls(b, True, True)
    calls(b, *[False] * POLICY.min_calls)
    assert b.state is BreakerState.OPEN
    assert b.snapshot()["opened_total"] == 3


def test_snapshot(clock: FakeClock) -> None:
    b = breaker(clock)
    assert b.snapshot() == {
        "state": "closed",
        "calls": 0,
        "failures": 0,
        "opened_age_s": None,
        "probes_in_flight": 0,
        "opened_total": 0,
        "rejected_total": 0,
    }
    calls(b, True, *[False] * 3)
    assert not b.allow()
    clock.now += 2.0
    assert b.snapshot() == {
        "state": "open",
        "calls": 4,
        "failures": 3,
        "opened_age_s": 2.0,
        "probes_in_flight": 0,
        "opened_total": 1,
        "rejected_total": 1,
    }


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"window_s": 0.0}, "window_s"),
        ({"open_s": -1.0}, "open_s"),
        ({"min_calls": 0}, "min_calls"),
        ({"probes": 0}, "probes"),
        ({"failure_rate": 0.0}, "failure_rate"),
        ({"failure_rate": 1.5}, "failure_rate"),
    ],
)
def test_policy_rejects_nonsense(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BreakerPolicy(**fields)


# Any sequence of calls


PROPERTY_POLICY = BreakerPolicy(
    window_s=10.0, min_calls=5, failure_rate=0.5, open_s=3.0, probes=2, slow_ms=100.0
)
EVENTS = st.lists(
    st.tuples(
        st.floats(min_value=0.0, max_value=12.0, allow_nan=False),
        st.booleans(),
        st.floats(min_value=0.0, max_value=200.0, allow_nan=False),
    ),
    max_size=200,
)


@given(events=EVENTS)
def test_invariants_hold_for_any_sequence(events: list[tuple[float, bool, float]]) -> None:
    policy = PROPERTY_POLICY
    clock = FakeClock()
    b = breaker(clock, policy)
    recorded_at: list[float] = []  # outcomes the CLOSED breaker saw since it last closed
    probe_failed = False
    for advance_s, ok, latency_ms in events:
        clock.now += advance_s
        if not b.allow():
            continue
        before = b.state
        b.record(ok, latency_ms)
        after = b.state
        if before is BreakerState.CLOSED:
            recorded_at.append(clock.now)
        elif before is BreakerState.HALF_OPEN and after is BreakerState.CLOSED:
            recorded_at, probe_failed = [], False
        elif before is BreakerState.HALF_OPEN and after is BreakerState.OPEN:
            probe_failed = True

        snap = b.snapshot()
        in_window = sum(clock.now - t < policy.window_s for t in recorded_at)
        assert after in set(BreakerState)
        assert snap["state"] == after.value
        assert 0 <= snap["failures"] <= snap["calls"] <= in_window
        if after is BreakerState.OPEN:
            assert len(recorded_at) >= policy.min_calls or probe_failed
        if after is BreakerState.CLOSED and snap["calls"] >= policy.min_calls:
            assert snap["failures"] / snap["calls"] < policy.failure_rate
