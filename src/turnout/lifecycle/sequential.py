"""Always-valid comparison of a challenger against the champion, checked as often as wanted.

A challenge gate reads live metrics every few seconds. A fixed-horizon test read that often
calls a challenger "better" far more often than its level says. The mixture sequential
probability ratio test (mSPRT with a normal mixture; Johari, Koomen, Pekelis and Walsh,
"Always valid inference") gives p-values and intervals that stay valid at every check.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from typing import Any

from scipy.stats import norm

from turnout.errors import BadRequest

PROPORTION_TAU = 0.05
"""Mixing scale for proportions (accuracy, error rate), in absolute proportion.

The mixture weighs true differences of about five points most: the size a rollout is run
to find. Power depends on tau only logarithmically, so a guess off by a few times costs
little (at 10,000 answers per arm, tau = 0.01 or 0.1 moves the bar by under 0.3 sd)."""

MEAN_TAU_SD = 0.2
"""Mixing scale for means (latency, revenue), in per-answer standard deviations.

Means have no natural unit, so tau is 0.2 sd (Cohen's "small" effect), taken from the pooled
variance of both arms. The test then gives the same answer in milliseconds or seconds."""

PROPORTION_FLOOR = 0.5
"""An arm with all (or no) successes is treated as if half an answer went the other way,
so its variance is never zero and a perfect arm is not infinitely certain."""


class Verdict(StrEnum):
    BETTER = "better"
    WORSE = "worse"
    INCONCLUSIVE = "inconclusive"


class Metric(StrEnum):
    PROPORTIONS = "proportions"
    MEANS = "means"


@dataclass(frozen=True, kw_only=True)
class Decision:
    """What the evidence says about the challenger (b) against the champion (a).

    `effect` is challenger minus champion, positive when the challenger is higher; `ci_low`
    and `ci_high` bound it with an always-valid interval at level `alpha`; `p_value` is the
    always-valid p-value of "no difference". All four are None when either arm has too few
    answers for the normal approximation.
    """

    verdict: Verdict
    p_value: float | None
    effect: float | None
    ci_low: float | None
    ci_high: float | None
    n_champion: int
    n_challenger: int
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "verdict": self.verdict.value}


@dataclass(frozen=True, slots=True)
class _Look:
    """One check: the estimated effect, its variance and the data-scaled default tau."""

    effect: float
    variance: float
    n_a: int
    n_b: int
    default_tau: float


@dataclass(frozen=True, kw_only=True, slots=True)
class _Rules:
    alpha: float
    min_samples: int
    tau: float | None
    higher_is_better: bool
    margin: float

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise BadRequest(f"alpha must be between 0 and 1, not {self.alpha}")
        if self.min_samples < 1:
            raise BadRequest(f"min_samples must be at least 1, not {self.min_samples}")
        if self.tau is not None and not (math.isfinite(self.tau) and self.tau > 0):
            raise BadRequest(f"tau must be a positive number, not {self.tau}")
        if not (math.isfinite(self.margin) and self.margin >= 0):
            raise BadRequest(f"margin must be zero or positive, not {self.margin}")

    def too_few(self, look: _Look) -> Decision | None:
        fewest = min(look.n_a, look.n_b)
        if fewest < self.min_samples:
            return self._undecided(look, f"too few samples: {fewest} < {self.min_samples} per arm")
        if look.variance <= 0 or (self.tau is None and look.default_tau <= 0):
            return self._undecided(look, "no spread in either arm: nothing to compare")
        return None

    def _undecided(self, look: _Look, reason: str) -> Decision:
        return Decision(
            verdict=Verdict.INCONCLUSIVE,
            p_value=None,
            effect=None,
            ci_low=None,
            ci_high=None,
            n_champion=look.n_a,
            n_challenger=look.n_b,
            reason=reason,
        )

    def decide(self, look: _Look, p: float, low: float, high: float, note: str = "") -> Decision:
        """Better: the whole interval clears `margin` in the good direction. Worse: the whole
        interval lies in the bad direction. Anything else is inconclusive."""
        sign = 1.0 if self.higher_is_better else -1.0
        gain_low, gain_high = sorted((sign * low, sign * high))
        span = f"effect {look.effect:+.4g}, interval {low:+.4g} to {high:+.4g}, p = {p:.3g}"
        if note:
            verdict, reason = Verdict.INCONCLUSIVE, f"{note} ({span})"
        elif gain_low > self.margin:
            verdict, reason = Verdict.BETTER, f"challenger is better ({span})"
        elif gain_high < 0:
            verdict, reason = Verdict.WORSE, f"challenger is worse ({span})"
        elif gain_low > 0:
            verdict = Verdict.INCONCLUSIVE
            reason = f"challenger is better but not surely by more than {self.margin:.4g} ({span})"
        else:
            verdict, reason = Verdict.INCONCLUSIVE, f"no difference shown yet ({span})"
        return Decision(
            verdict=verdict,
            p_value=p,
            effect=look.effect,
            ci_low=low,
            ci_high=high,
            n_champion=look.n_a,
            n_challenger=look.n_b,
            reason=reason,
        )


def mixture_log_ratio(effect: float, variance: float, tau: float) -> float:
    """log of the mSPRT statistic: how much likelier the observed effect is when the true
    effect is drawn from N(0, tau²) than when it is zero (a ratio of two normal densities)."""
    spread = math.sqrt(variance + tau * tau)
    return float(norm.logpdf(effect, scale=spread) - norm.logpdf(effect, scale=math.sqrt(variance)))


def mixture_p_value(effect: float, variance: float, tau: float) -> float:
    """Always-valid p-value of "no difference": min(1, 1 / mixture ratio)."""
    return math.exp(min(0.0, -mixture_log_ratio(effect, variance, tau)))


def confidence_radius(variance: float, tau: float, alpha: float) -> float:
    """Half-width of the always-valid interval: every effect it leaves out has p < alpha."""
    total = variance + tau * tau
    evidence = 2.0 * math.log(1.0 / alpha) + math.log(total / variance)
    return math.sqrt(variance * total / (tau * tau) * evidence)


def _measure(look: _Look, tau: float, alpha: float) -> tuple[float, float, float]:
    radius = confidence_radius(look.variance, tau, alpha)
    p = mixture_p_value(look.effect, look.variance, tau)
    return p, look.effect - radius, look.effect + radius


def _count(name: str, value: int) -> int:
    if value < 0:
        raise BadRequest(f"{name} must be zero or positive, not {value}")
    return int(value)


def _proportions_look(successes_a: int, n_a: int, successes_b: int, n_b: int) -> _Look:
    n_a, n_b = _count("n_a", n_a), _count("n_b", n_b)
    for name, successes, n in (
        ("successes_a", successes_a, n_a),
        ("successes_b", successes_b, n_b),
    ):
        if not 0 <= successes <= n:
            raise BadRequest(f"{name} must be between 0 and its n ({n}), not {successes}")
    if n_a == 0 or n_b == 0:
        return _Look(0.0, 0.0, n_a, n_b, PROPORTION_TAU)

    def rate_and_variance(successes: int, n: int) -> tuple[float, float]:
        floor = PROPORTION_FLOOR / n
        rate = successes / n
        kept = min(max(rate, floor), 1.0 - floor)
        return rate, kept * (1.0 - kept) / n

    rate_a, var_a = rate_and_variance(successes_a, n_a)
    rate_b, var_b = rate_and_variance(successes_b, n_b)
    return _Look(rate_b - rate_a, var_a + var_b, n_a, n_b, PROPORTION_TAU)


def _means_look(
    mean_a: float, var_a: float, n_a: int, mean_b: float, var_b: float, n_b: int
) -> _Look:
    n_a, n_b = _count("n_a", n_a), _count("n_b", n_b)
    for name, value in (("mean_a", mean_a), ("mean_b", mean_b)):
        if not math.isfinite(value):
            raise BadRequest(f"{name} must be a finite number, not {value}")
    for name, value in (("var_a", var_a), ("var_b", var_b)):
        if not (math.isfinite(value) and value >= 0):
            raise BadRequest(f"{name} must be zero or positive, not {value}")
    if n_a == 0 or n_b == 0:
        return _Look(0.0, 0.0, n_a, n_b, 0.0)
    default_tau = MEAN_TAU_SD * math.sqrt((var_a + var_b) / 2.0)
    return _Look(mean_b - mean_a, var_a / n_a + var_b / n_b, n_a, n_b, default_tau)


def _compare(look: _Look, rules: _Rules) -> Decision:
    undecided = rules.too_few(look)
    if undecided is not None:
        return undecided
    tau = look.default_tau if rules.tau is None else rules.tau
    p, low, high = _measure(look, tau, rules.alpha)
    return rules.decide(look, p, low, high)


def compare_proportions(
    successes_a: int,
    n_a: int,
    successes_b: int,
    n_b: int,
    *,
    alpha: float = 0.05,
    min_samples: int = 200,
    tau: float | None = None,
    higher_is_better: bool = True,
    margin: float = 0.0,
) -> Decision:
    """Compare two success rates (champion a, challenger b) with an always-valid test.

    Each arm's variance is its own p(1-p)/n (no pooling). The verdict is "better" when the
    whole interval on the effect lies beyond `margin` in the good direction (above it, or
    below -margin when `higher_is_better` is False), "worse" when the whole interval lies
    in the bad direction, and "inconclusive" otherwise: `margin` is the smallest gain worth
    a switch, while a challenger shown to be worse at all is worse. Both imply p < alpha.

    Every call is valid on its own, so a gate may call this with running totals at every
    check; a caller that checks repeatedly should keep the smallest p-value seen (that is
    what `SequentialTest` does). `tau` defaults to `PROPORTION_TAU`.
    """
    rules = _Rules(
        alpha=alpha,
        min_samples=min_samples,
        tau=tau,
        higher_is_better=higher_is_better,
        margin=margin,
    )
    return _compare(_proportions_look(successes_a, n_a, successes_b, n_b), rules)


def compare_means(
    mean_a: float,
    var_a: float,
    n_a: int,
    mean_b: float,
    var_b: float,
    n_b: int,
    *,
    alpha: float = 0.05,
    min_samples: int = 200,
    tau: float | None = None,
    higher_is_better: bool = True,
    margin: float = 0.0,
) -> Decision:
    """Compare two means (champion a, challenger b) from each arm's mean, per-answer
    variance and count, with an always-valid test.

    Verdicts and repeated checks work as in `compare_proportions`; for latency pass
    `higher_is_better=False`. `tau` defaults to `MEAN_TAU_SD` pooled standard deviations.
    """
    rules = _Rules(
        alpha=alpha,
        min_samples=min_samples,
        tau=tau,
        higher_is_better=higher_is_better,
        margin=margin,
    )
    return _compare(_means_look(mean_a, var_a, n_a, mean_b, var_b, n_b), rules)


class SequentialTest:
    """One champion/challenger comparison followed across checks, resumable after a restart.

    Each check passes running totals. The test keeps the smallest p-value seen and the
    intersection of the intervals seen: both stay always valid, never get weaker, and agree
    (p < alpha exactly when the kept interval leaves out zero), so a verdict once reached
    stays. Tau is fixed at the first check with enough samples. If a new interval misses
    the kept one, the effect has moved (traffic not comparable over time): the test then
    stays inconclusive, and a new test should be started.
    """

    def __init__(
        self,
        *,
        alpha: float = 0.05,
        min_samples: int = 200,
        tau: float | None = None,
        higher_is_better: bool = True,
        margin: float = 0.0,
    ) -> None:
        self.rules = _Rules(
            alpha=alpha,
            min_samples=min_samples,
            tau=tau,
            higher_is_better=higher_is_better,
            margin=margin,
        )
        self.metric: Metric | None = None
        self.looks = 0
        self.min_p: float | None = None
        self.interval: tuple[float, float] | None = None
        self.moved = False

    def update_proportions(
        self, successes_a: int, n_a: int, successes_b: int, n_b: int
    ) -> Decision:
        return self._update(
            Metric.PROPORTIONS, _proportions_look(successes_a, n_a, successes_b, n_b)
        )

    def update_means(
        self, mean_a: float, var_a: float, n_a: int, mean_b: float, var_b: float, n_b: int
    ) -> Decision:
        return self._update(Metric.MEANS, _means_look(mean_a, var_a, n_a, mean_b, var_b, n_b))

    def _update(self, metric: Metric, look: _Look) -> Decision:
        if self.metric not in (None, metric):
            raise BadRequest(f"this test compares {self.metric}, not {metric}")
        self.metric = metric
        undecided = self.rules.too_few(look)
        if undecided is not None:
            return undecided
        tau = look.default_tau if self.rules.tau is None else self.rules.tau
        self.rules = replace(self.rules, tau=tau)
        p, low, high = _measure(look, tau, self.rules.alpha)
        self.looks += 1
        self.min_p = p if self.min_p is None else min(self.min_p, p)
        kept = (low, high) if self.interval is None else self.interval
        joined = (max(low, kept[0]), min(high, kept[1]))
        self.moved = self.moved or joined[0] > joined[1]
        if not self.moved:
            self.interval = joined
            return self.rules.decide(look, self.min_p, *joined)
        note = (
            f"the effect moved between checks (kept interval {kept[0]:+.4g} to {kept[1]:+.4g}):"
            " start a new test"
        )
        return self.rules.decide(look, self.min_p, low, high, note)

    def to_dict(self) -> dict[str, Any]:
        return {
            "alpha": self.rules.alpha,
            "min_samples": self.rules.min_samples,
            "tau": self.rules.tau,
            "higher_is_better": self.rules.higher_is_better,
            "margin": self.rules.margin,
            "metric": None if self.metric is None else self.metric.value,
            "looks": self.looks,
            "min_p_value": self.min_p,
            "ci_low": None if self.interval is None else self.interval[0],
            "ci_high": None if self.interval is None else self.interval[1],
            "moved": self.moved,
        }

    @classmethod
    def from_dict(cls, state: Mapping[str, Any]) -> SequentialTest:
        try:
            test = cls(
                alpha=float(state["alpha"]),
                min_samples=int(state["min_samples"]),
                tau=None if state["tau"] is None else float(state["tau"]),
                higher_is_better=bool(state["higher_is_better"]),
                margin=float(state["margin"]),
            )
            test.metric = None if state["metric"] is None else Metric(state["metric"])
            test.looks = int(state["looks"])
            test.min_p = None if state["min_p_value"] is None else float(state["min_p_value"])
            if state["ci_low"] is not None:
                test.interval = (float(state["ci_low"]), float(state["ci_high"]))
            test.moved = bool(state["moved"])
        except (KeyError, TypeError, ValueError) as exc:
            raise BadRequest(f"not a saved sequential test: {exc!r}") from exc
        return test
