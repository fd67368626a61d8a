"""Always-valid champion/challenger tests: the mixture formulas against scipy, the error
rate under continuous peeking against a naive z-test, power, and the resumable state.

The simulations run 400 experiments of 40 checks, each check adding 250 answers per arm,
with fixed seeds; a "false promotion" is a "better" verdict at any check.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
from scipy import integrate, optimize
from scipy.stats import norm

from turnout.errors import BadRequest
from turnout.lifecycle.sequential import (
    Decision,
    SequentialTest,
    Verdict,
    compare_means,
    compare_proportions,
    confidence_radius,
    mixture_log_ratio,
    mixture_p_value,
)

ALPHA = 0.05
EXPERIMENTS, LOOKS, STEP = 400, 40, 250
SIZES = STEP * np.arange(1, LOOKS + 1)


@dataclass(frozen=True)
class Proportions:
    """Running success counts per experiment and check, champion (a) and challenger (b)."""

    a: np.ndarray
    b: np.ndarray

    @classmethod
    def simulate(cls, rate_a: float, rate_b: float, seed: int) -> Proportions:
        rng = np.random.default_rng(seed)
        shape = (EXPERIMENTS, LOOKS)
        return cls(
            rng.binomial(STEP, rate_a, size=shape).cumsum(axis=1),
            rng.binomial(STEP, rate_b, size=shape).cumsum(axis=1),
        )

    def check(self, test: SequentialTest, e: int, look: int) -> Decision:
        n = int(SIZES[look])
        return test.update_proportions(int(self.a[e, look]), n, int(self.b[e, look]), n)


@dataclass(frozen=True)
class Means:
    """Running mean and variance of skewed (gamma) latencies per experiment and check."""

    mean_a: np.ndarray
    var_a: np.ndarray
    mean_b: np.ndarray
    var_b: np.ndarray

    @classmethod
    def simulate(cls, ms_a: float, ms_b: float, sd_ms: float, seed: int) -> Means:
        rng = np.random.default_rng(seed)

        def running(mean: float) -> tuple[np.ndarray, np.ndarray]:
            shape = (mean / sd_ms) ** 2
            x = rng.gamma(shape, mean / shape, size=(EXPERIMENTS, LOOKS, STEP))
            total, squares = x.sum(axis=2).cumsum(axis=1), (x * x).sum(axis=2).cumsum(axis=1)
            m = total / SIZES
            return m, (squares - SIZES * m * m) / (SIZES - 1)

        return cls(*running(ms_a), *running(ms_b))

    def check(self, test: SequentialTest, e: int, look: int) -> Decision:
        n = int(SIZES[look])
        return test.update_means(
            float(self.mean_a[e, look]),
            float(self.var_a[e, look]),
            n,
            float(self.mean_b[e, look]),
            float(self.var_b[e, look]),
            n,
        )


def verdicts_at_every_look(
    data: Proportions | Means, *, higher_is_better: bool = True
) -> np.ndarray:
    """The verdict of each experiment's test at each check, as strings."""
    out = np.empty((EXPERIMENTS, LOOKS), dtype=object)
    for e in range(EXPERIMENTS):
        test = SequentialTest(higher_is_better=higher_is_better)
        for look in range(LOOKS):
            out[e, look] = data.check(test, e, look).verdict.value
    return out


def first_verdicts(data: Proportions | Means, *, higher_is_better: bool = True) -> list[str]:
    """Each experiment's verdict at its first decisive check (a rollout stops there)."""
    found = []
    for e in range(EXPERIMENTS):
        test = SequentialTest(higher_is_better=higher_is_better)
        verdict = Verdict.INCONCLUSIVE
        for look in range(LOOKS):
            verdict = data.check(test, e, look).verdict
            if verdict is not Verdict.INCONCLUSIVE:
                break
        found.append(verdict.value)
    return found


def measured(d: Decision) -> tuple[float, float, float]:
    """p-value and interval of a decision that had enough samples."""
    assert d.p_value is not None
    assert d.ci_low is not None
    assert d.ci_high is not None
    return d.p_value, d.ci_low, d.ci_high


# -- the formulas, against scipy --------------------------------------------------------


@pytest.mark.parametrize(
    ("effect", "variance", "tau"),
    [(0.0, 1e-4, 0.05), (0.01, 2e-5, 0.05), (-0.03, 4e-4, 0.02), (1.5, 0.09, 4.0)],
)
def test_mixture_ratio_is_the_normal_mixture_integral(
    effect: float, variance: float, tau: float
) -> None:
    sd = math.sqrt(variance)
    closed = 0.5 * math.log(variance / (variance + tau**2)) + effect**2 * tau**2 / (
        2 * variance * (variance + tau**2)
    )
    mixture, _ = integrate.quad(
        lambda theta: norm.pdf(effect, loc=theta, scale=sd) * norm.pdf(theta, scale=tau),
        -12 * tau,
        12 * tau,
        points=[effect],
        epsabs=0,
        limit=200,
    )
    by_integral = math.log(mixture / norm.pdf(effect, scale=sd))
    assert mixture_log_ratio(effect, variance, tau) == pytest.approx(closed, rel=1e-9, abs=1e-12)
    assert by_integral == pytest.approx(closed, rel=1e-6, abs=1e-9)
    assert mixture_p_value(effect, variance, tau) == pytest.approx(min(1.0, math.exp(-closed)))


@pytest.mark.parametrize(("variance", "tau", "alpha"), [(2e-5, 0.05, 0.05), (0.3, 1.0, 0.01)])
def test_interval_ends_are_where_the_shifted_p_value_reaches_alpha(
    variance: float, tau: float, alpha: float
) -> None:
    effect = 0.7 * math.sqrt(variance)
    radius = confidence_radius(variance, tau, alpha)
    closed = math.sqrt(
        variance
        * (variance + tau**2)
        / tau**2
        * (2 * math.log(1 / alpha) + math.log((variance + tau**2) / variance))
    )
    assert radius == pytest.approx(closed, rel=1e-12)

    def excess(theta: float) -> float:
        return mixture_log_ratio(effect - theta, variance, tau) - math.log(1 / alpha)

    high = optimize.brentq(excess, effect, effect + 50 * radius, xtol=1e-14, rtol=1e-12)
    low = optimize.brentq(excess, effect - 50 * radius, effect, xtol=1e-14, rtol=1e-12)
    assert (low, high) == pytest.approx((effect - radius, effect + radius), rel=1e-9)


def test_p_below_alpha_exactly_when_the_interval_leaves_out_zero() -> None:
    rng = np.random.default_rng(3)
    for _ in range(300):
        n_a, n_b = (int(n) for n in rng.integers(200, 20_000, size=2))
        rate = rng.uniform(0.5, 0.99)
        s_a = int(rng.binomial(n_a, rate))
        s_b = int(rng.binomial(n_b, min(1.0, rate + rng.normal(0, 0.03))))
        d = compare_proportions(s_a, n_a, s_b, n_b)
        p, low, high = measured(d)
        assert (p < ALPHA) == (not low <= 0 <= high)
        assert (p < ALPHA) == (d.verdict is not Verdict.INCONCLUSIVE)


# -- error rates under continuous peeking ----------------------------------------------


def test_aa_peeking_every_check_promotes_at_most_alpha_while_a_naive_z_test_does_not() -> None:
    data = Proportions.simulate(0.9, 0.9, seed=20240501)
    verdicts = verdicts_at_every_look(data)
    promoted = (verdicts == "better").any(axis=1)
    decided = (verdicts != "inconclusive").any(axis=1)
    assert promoted.mean() <= ALPHA
    assert decided.mean() <= ALPHA
    assert not (promoted & (verdicts == "worse").any(axis=1)).any()

    rate_a, rate_b = data.a / SIZES, data.b / SIZES
    z = (rate_b - rate_a) / np.sqrt((rate_a * (1 - rate_a) + rate_b * (1 - rate_b)) / SIZES)
    naive_better = (2 * norm.sf(np.abs(z)) < ALPHA) & (z > 0)
    assert naive_better[:, -1].mean() <= ALPHA  # fine when looked at once, at the end
    assert naive_better.any(axis=1).mean() > 2 * ALPHA  # far from fine when peeked at


@pytest.mark.parametrize(
    ("rate_a", "rate_b", "expected"),
    [(0.85, 0.90, "better"), (0.90, 0.85, "worse"), (0.88, 0.90, "better")],
)
def test_real_differences_are_found_in_the_right_direction(
    rate_a: float, rate_b: float, expected: str
) -> None:
    found = first_verdicts(Proportions.simulate(rate_a, rate_b, seed=7))
    assert found.count(expected) / EXPERIMENTS >= 0.8
    wrong = "worse" if expected == "better" else "better"
    assert found.count(wrong) == 0


def test_aa_latency_peeking_decides_at_most_alpha() -> None:
    data = Means.simulate(50.0, 50.0, sd_ms=20.0, seed=5)
    verdicts = verdicts_at_every_look(data, higher_is_better=False)
    assert (verdicts == "better").any(axis=1).mean() <= ALPHA
    assert (verdicts != "inconclusive").any(axis=1).mean() <= ALPHA


def test_a_slower_challenger_is_worse_when_lower_latency_is_better() -> None:
    data = Means.simulate(50.0, 52.0, sd_ms=20.0, seed=6)
    assert first_verdicts(data, higher_is_better=False) == ["worse"] * EXPERIMENTS
    assert first_verdicts(data, higher_is_better=True) == ["better"] * EXPERIMENTS


# -- single decisions -------------------------------------------------------------------


def test_too_few_samples_is_inconclusive_with_a_readable_reason() -> None:
    d = compare_proportions(36, 40, 190, 200)
    assert d.verdict == "inconclusive"
    assert (d.p_value, d.effect, d.ci_low, d.ci_high) == (None, None, None, None)
    assert (d.n_champion, d.n_challenger) == (40, 200)
    assert d.reason == "too few samples: 40 < 200 per arm"
    assert compare_means(50.0, 400.0, 0, 50.0, 400.0, 0).reason.startswith("too few samples")


def test_margin_raises_the_bar_for_better_only() -> None:
    better = compare_proportions(8_800, 10_000, 9_000, 10_000)
    assert better.verdict == "better"
    assert better.effect == pytest.approx(0.02)
    assert 0 < measured(better)[1] < 0.015
    held = compare_proportions(8_800, 10_000, 9_000, 10_000, margin=0.015)
    assert held.verdict == "inconclusive"
    assert held.p_value == better.p_value
    assert "not surely by more than 0.015" in held.reason
    worse = compare_proportions(9_000, 10_000, 8_800, 10_000, margin=0.015)
    assert worse.verdict == "worse"
    assert worse.reason.startswith("challenger is worse (effect -0.02")


def test_error_rates_compare_with_lower_is_better() -> None:
    fewer_errors = compare_proportions(200, 10_000, 120, 10_000, higher_is_better=False)
    assert fewer_errors.verdict == "better"
    assert fewer_errors.effect == pytest.approx(-0.008)
    assert compare_proportions(200, 10_000, 120, 10_000).verdict == "worse"


def test_perfect_arms_keep_a_positive_variance() -> None:
    same = compare_proportions(500, 500, 500, 500)
    assert same.verdict == "inconclusive"
    assert same.p_value == 1.0
    _, low, high = measured(same)
    assert low < 0 < high
    worse = compare_proportions(500, 500, 440, 500)
    assert worse.verdict == "worse"
    assert all(math.isfinite(x) for x in measured(worse))


def test_means_give_the_same_answer_in_any_unit() -> None:
    ms = compare_means(50.0, 400.0, 3_000, 52.5, 420.0, 2_500, higher_is_better=False)
    s = compare_means(0.050, 400e-6, 3_000, 0.0525, 420e-6, 2_500, higher_is_better=False)
    assert ms.verdict == s.verdict == "worse"
    assert ms.p_value == pytest.approx(s.p_value, rel=1e-9)
    assert measured(s)[1] == pytest.approx(measured(ms)[1] / 1000, rel=1e-9)


def test_means_without_spread_are_inconclusive() -> None:
    d = compare_means(1.0, 0.0, 500, 1.0, 0.0, 500)
    assert d.verdict == "inconclusive"
    assert d.p_value is None
    assert d.reason == "no spread in either arm: nothing to compare"


def test_decision_is_plain_json() -> None:
    d = compare_proportions(8_800, 10_000, 9_000, 10_000)
    loaded = json.loads(json.dumps(d.to_dict()))
    assert loaded["verdict"] == "better"
    assert type(loaded["verdict"]) is str
    assert set(loaded) == {
        "verdict",
        "p_value",
        "effect",
        "ci_low",
        "ci_high",
        "n_champion",
        "n_challenger",
        "reason",
    }


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: compare_proportions(10, 5, 1, 5), "successes_a must be between 0 and its n"),
        (lambda: compare_proportions(1, -5, 1, 5), "n_a must be zero or positive"),
        (lambda: compare_proportions(1, 5, 1, 5, alpha=1.5), "alpha must be between 0 and 1"),
        (lambda: compare_proportions(1, 5, 1, 5, tau=0.0), "tau must be a positive number"),
        (lambda: compare_proportions(1, 5, 1, 5, margin=-0.1), "margin must be zero or positive"),
        (lambda: compare_means(1.0, -1.0, 5, 1.0, 1.0, 5), "var_a must be zero or positive"),
        (lambda: compare_means(math.nan, 1.0, 5, 1.0, 1.0, 5), "mean_a must be a finite number"),
        (lambda: SequentialTest(min_samples=0), "min_samples must be at least 1"),
    ],
)
def test_bad_arguments_are_refused(call: Callable[[], object], message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        call()


# -- state across checks ----------------------------------------------------------------

# a challenger that looks much better early, then the gap closes
FADING = [(900, 1_000, 950, 1_000), (1_800, 2_000, 1_880, 2_000), (9_000, 10_000, 9_080, 10_000)]


def test_running_p_value_never_increases() -> None:
    alone = [measured(compare_proportions(*counts))[0] for counts in FADING]
    assert alone[2] > alone[0]
    test = SequentialTest()
    kept = [test.update_proportions(*counts).p_value for counts in FADING]
    assert kept == list(np.minimum.accumulate(alone))


def test_a_verdict_once_reached_stays_and_the_interval_only_narrows() -> None:
    test = SequentialTest()
    decisions = [test.update_proportions(*counts) for counts in FADING]
    assert [d.verdict.value for d in decisions] == ["better"] * 3
    lows = [measured(d)[1] for d in decisions]
    highs = [measured(d)[2] for d in decisions]
    assert lows == sorted(lows)
    assert highs == sorted(highs, reverse=True)


def test_an_effect_that_moves_stops_the_test() -> None:
    test = SequentialTest()
    assert test.update_proportions(9_000, 10_000, 9_300, 10_000).verdict == "better"
    moved = test.update_proportions(18_000, 20_000, 17_400, 20_000)
    assert moved.verdict == "inconclusive"
    assert "the effect moved between checks" in moved.reason
    assert test.update_proportions(27_000, 30_000, 27_000, 30_000).verdict == "inconclusive"


def test_state_survives_a_restart() -> None:
    data = Means.simulate(50.0, 51.0, sd_ms=20.0, seed=9)
    whole, resumed = SequentialTest(higher_is_better=False), SequentialTest(higher_is_better=False)
    for look in range(LOOKS):
        if look == LOOKS // 2:
            saved = json.loads(json.dumps(resumed.to_dict()))
            resumed = SequentialTest.from_dict(saved)
            assert saved["tau"] is not None  # fixed at the first check with enough samples
        assert data.check(resumed, 0, look) == data.check(whole, 0, look)
    assert resumed.to_dict() == whole.to_dict()


def test_a_saved_test_resumes_only_from_its_own_state() -> None:
    with pytest.raises(BadRequest, match="not a saved sequential test"):
        SequentialTest.from_dict({"alpha": 0.05})
    test = SequentialTest()
    test.update_proportions(900, 1_000, 910, 1_000)
    with pytest.raises(BadRequest, match="this test compares proportions, not means"):
        test.update_means(1.0, 1.0, 500, 1.0, 1.0, 500)
