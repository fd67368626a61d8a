"""Gates: whether the evidence so far lets a rollout step pass, makes it fail, or says wait.

Each gate is a pure function of a plan section and the metrics of the groups involved
(one `GroupStats` per version and role, as `Monitor.groups` lists them), so the controller
can call it at every look. Inconclusive means wait: a gate never passes on too
little evidence, and a step still inconclusive past its timeout fails.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from turnout.lifecycle.plans import (
    LOWER_IS_BETTER,
    BakePlan,
    ChallengePlan,
    ValidatePlan,
    WarmupPlan,
)
from turnout.lifecycle.reports import ValidationReport
from turnout.lifecycle.sequential import Decision, SequentialTest
from turnout.monitoring.groups import GroupStats
from turnout.types import JSON

GUARDRAIL_MIN_REQUESTS = 100
"""Requests a shadow or challenger must have answered before a guardrail breach fails it."""
BAKE_MIN_REQUESTS = 50
"""Requests the new champion must have answered before a breach rolls it back."""
MIRROR_MIN_REQUESTS = 20
"""Shadow answers of the previous champion needed before its errors while baking count."""
MIN_ACTUALS = 100
"""Actuals each side needs before accuracies are compared."""
RATIO_FLOOR_MS = 5.0
"""A shadow whose p99 stays under this is never failed for being slower than the champion:
at a few milliseconds, scheduling noise alone moves the ratio past any sensible limit."""

_LABELS = {
    "error_rate": ("error rate", "%"),
    "fallback_rate": ("fallback rate", "%"),
    "latency_p99_ms": ("p99 latency", "ms"),
    "latency_ratio": ("p99 latency relative to the champion's", "x"),
    "agreement": ("agreement with the champion", "%"),
    "accuracy_drop": ("accuracy drop", "%"),
    "latency_ms": ("latency", "ms"),
    "correlation": ("score correlation with the champion", ""),
}
"""How each checked number is named and shown in reasons; others show as their name."""


class Outcome(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a gate concluded, why (one sentence), and the numbers and thresholds it used."""

    outcome: str
    """An `Outcome`: "pass", "fail" or "inconclusive"."""
    reason: str
    evidence: dict[str, JSON] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "outcome", Outcome(self.outcome))

    def to_dict(self) -> dict[str, JSON]:
        return {"outcome": str(self.outcome), "reason": self.reason, "evidence": self.evidence}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Verdict:
        return cls(str(data["outcome"]), str(data["reason"]), dict(data.get("evidence") or {}))


@dataclass(frozen=True, slots=True, kw_only=True)
class Limit:
    """One number held against one threshold. `counted` is False while there is too little
    evidence for a breach to count; `value` None means the number is not known."""

    name: str
    value: float | None
    limit: float
    upper: bool = True
    counted: bool = True

    @property
    def breached(self) -> bool:
        if self.value is None or not self.counted:
            return False
        return self.value > self.limit if self.upper else self.value < self.limit

    def to_dict(self) -> dict[str, JSON]:
        known = self.value is not None and self.counted
        bound = "max" if self.upper else "min"
        return {"value": self.value, bound: self.limit, "ok": not self.breached if known else None}

    def shown(self) -> str:
        """The number with its name, e.g. "error rate 3.2%"."""
        label, unit = _LABELS.get(self.name, (self.name.replace("_", " "), ""))
        return f"{label} {_show(self.value, unit)}"

    def describe(self) -> str:
        unit = _LABELS.get(self.name, ("", ""))[1]
        side = "above the maximum of" if self.upper else "below the minimum of"
        return f"{self.shown()} is {side} {_show(self.limit, unit)}"


def _show(value: float | None, unit: str) -> str:
    if value is None:
        return "unknown"
    if unit == "%":
        return f"{value * 100:.3g}%"
    if unit == "ms":
        return f"{value:.4g} ms"
    return f"{value:.3g}{unit}"


# -- reading groups ----------------------------------------------------------------------


def _requests(group: GroupStats | None) -> int:
    return group.requests if group is not None else 0


def _number(group: Mapping[str, Any] | None, key: str) -> float | None:
    """A number of an offline report, which may be a metric with its interval."""
    value = (group or {}).get(key)
    if isinstance(value, Mapping):  # a metric with its interval
        value = value.get("value")
    return None if value is None else float(value)


def _failure_rate(group: GroupStats | None) -> float | None:
    """What the plans' `max_error_rate` limits: every request the version failed to answer
    itself, errors and timeouts (`GroupStats.failure_rate`)."""
    return group.failure_rate if group is not None else None


def _p99(group: GroupStats | None) -> float | None:
    return group.latency_p99_ms if group is not None else None


def _accuracy(group: GroupStats | None) -> float | None:
    """Accuracy once the group has enough actuals to be compared, else None."""
    if group is None or group.actuals < MIN_ACTUALS:
        return None
    return group.accuracy


def _drop(before: float | None, after: float | None) -> float | None:
    return None if before is None or after is None else before - after


def _snapshot(group: GroupStats | None) -> dict[str, JSON] | None:
    """The group as verdict evidence shows it. Its `error_rate` is the failure rate (errors
    and timeouts), the number the gates held against `max_error_rate`."""
    if group is None:
        return None
    return {
        "version": group.version,
        "role": group.role,
        "requests": group.requests,
        "errors": group.errors,
        "timeouts": group.timeouts,
        "fallbacks": group.fallbacks,
        "actuals": group.actuals,
        "correct": group.correct,
        "error_rate": group.failure_rate,
        "fallback_rate": group.fallback_rate,
        "latency_p99_ms": group.latency_p99_ms,
        "accuracy": group.accuracy,
        "agreement_rate": group.agreement_rate,
    }


def _verdict(outcome: Outcome, text: str, evidence: dict[str, JSON]) -> Verdict:
    """A verdict whose reason reads as one sentence."""
    text = text.strip().rstrip(".") + "."
    return Verdict(outcome, text[0].upper() + text[1:], evidence)


def _checks(limits: list[Limit]) -> dict[str, JSON]:
    return {limit.name: limit.to_dict() for limit in limits}


def _breaches(whose: str, limits: list[Limit]) -> str:
    return f"{whose} " + ", and ".join(limit.describe() for limit in limits)


# -- warm-up (shadow) --------------------------------------------------------------------


def warmup_gate(
    plan: WarmupPlan,
    shadow: GroupStats | None,
    champion: GroupStats | None,
    *,
    timeout_ms: int | None,
    elapsed_s: float,
) -> Verdict:
    """Pass once the shadow has answered `min_requests` within every limit; a breach fails
    as soon as enough answers show it. `timeout_ms` is the deployment's request deadline,
    the latency ceiling when the plan sets none."""
    requests = _requests(shadow)
    counted = requests >= min(GUARDRAIL_MIN_REQUESTS, plan.min_requests)
    limits = _warmup_limits(plan, shadow, champion, timeout_ms=timeout_ms, counted=counted)
    evidence: dict[str, JSON] = {
        "elapsed_s": elapsed_s,
        "timeout_s": plan.timeout_s,
        "requests": requests,
        "min_requests": plan.min_requests,
        "min_actuals": MIN_ACTUALS,
        "ratio_floor_ms": RATIO_FLOOR_MS,
        "checks": _checks(limits),
        "shadow": _snapshot(shadow),
        "champion": _snapshot(champion),
    }
    breached = [limit for limit in limits if limit.breached]
    if breached:
        return _verdict(
            Outcome.FAIL, _breaches("in shadow, the version's", breached) + ".", evidence
        )
    if requests >= plan.min_requests:
        reason = f"the shadow answered {requests} requests within every limit."
        return _verdict(Outcome.PASS, reason, evidence)
    if elapsed_s >= plan.timeout_s:
        reason = (
            f"only {requests} of the {plan.min_requests} shadow answers needed arrived "
            f"within the {plan.timeout_s:g} s timeout."
        )
        return _verdict(Outcome.FAIL, reason, evidence)
    reason = f"waiting for shadow answers: {requests} of {plan.min_requests} so far."
    return _verdict(Outcome.INCONCLUSIVE, reason, evidence)


def _warmup_limits(
    plan: WarmupPlan,
    shadow: GroupStats | None,
    champion: GroupStats | None,
    *,
    timeout_ms: int | None,
    counted: bool,
) -> list[Limit]:
    p99 = _p99(shadow)
    limits = [Limit(name="error_rate", value=_failure_rate(shadow), limit=plan.max_error_rate)]
    ceiling = plan.max_latency_p99_ms or timeout_ms
    if ceiling is not None:
        limits.append(Limit(name="latency_p99_ms", value=p99, limit=float(ceiling)))
    if plan.min_agreement > 0:
        agreement = shadow.agreement_rate if shadow is not None else None
        limits.append(
            Limit(name="agreement", value=agreement, limit=plan.min_agreement, upper=False)
        )
    limits = [replace(limit, counted=counted) for limit in limits]
    if plan.max_latency_ratio is not None:
        theirs = _p99(champion)
        ratio = p99 / theirs if p99 is not None and theirs else None
        slow = counted and p99 is not None and p99 >= RATIO_FLOOR_MS
        limits.append(
            Limit(name="latency_ratio", value=ratio, limit=plan.max_latency_ratio, counted=slow)
        )
    if plan.max_accuracy_drop is not None:  # counted by actuals, not requests
        drop = _drop(_accuracy(champion), _accuracy(shadow))
        limits.append(Limit(name="accuracy_drop", value=drop, limit=plan.max_accuracy_drop))
    return limits


# -- champion / challenger ---------------------------------------------------------------


def challenge_gate(
    plan: ChallengePlan,
    challenger: GroupStats | None,
    champion: GroupStats | None,
    *,
    elapsed_s: float,
    test_state: dict[str, JSON] | None,
) -> tuple[Verdict, dict[str, JSON]]:
    """One look at a challenge step: guardrails first, then the sequential test.

    The groups hold what each arm did since the step began and `elapsed_s` is the step's
    age. `test_state` is what the previous look of this step returned (None at the step's
    first look); pass the state returned to the next look.
    """
    test = SequentialTest.from_dict(test_state) if test_state else _new_test(plan)
    guardrails = _challenge_guardrails(plan, challenger)
    evidence: dict[str, JSON] = {
        "elapsed_s": elapsed_s,
        "step_timeout_s": plan.step_timeout_s,
        "metric": plan.metric,
        "min_samples": plan.min_samples,
        "alpha": plan.alpha,
        "margin": plan.margin,
        "guardrail_min_requests": GUARDRAIL_MIN_REQUESTS,
        "checks": _checks(guardrails),
        "challenger": _snapshot(challenger),
        "champion": _snapshot(champion),
    }
    breached = [limit for limit in guardrails if limit.breached]
    if breached and _requests(challenger) >= GUARDRAIL_MIN_REQUESTS:
        reason = _breaches("the challenger's", breached) + "."
        return _verdict(Outcome.FAIL, reason, evidence), test.to_dict()
    if challenger is None or champion is None:
        why = f"no answers from the {'challenger' if challenger is None else 'champion'} yet"
        return _undecided(plan, elapsed_s, why, evidence), test.to_dict()
    (a_hits, a_n), (b_hits, b_n) = _arm(plan, champion), _arm(plan, challenger)
    decision = test.update_proportions(a_hits, a_n, b_hits, b_n)
    evidence["samples"] = {"champion": a_n, "challenger": b_n}
    evidence["successes"] = {"champion": a_hits, "challenger": b_hits}
    evidence["test"] = decision.to_dict()
    outcome, why = _judge(plan, decision, moved=test.moved)
    if outcome == Outcome.PASS and breached:
        outcome = Outcome.INCONCLUSIVE
        why = _breaches(f"{why}, but the challenger's", breached) + (
            f" on fewer than {GUARDRAIL_MIN_REQUESTS} requests"
        )
    if outcome == Outcome.PASS and elapsed_s < plan.min_step_s:
        evidence["min_step_s"] = plan.min_step_s
        why = f"{why}, but the step runs at least {plan.min_step_s:g} s"
        outcome = Outcome.INCONCLUSIVE
    if outcome == Outcome.INCONCLUSIVE:
        return _undecided(plan, elapsed_s, why, evidence), test.to_dict()
    return _verdict(outcome, why, evidence), test.to_dict()


def _new_test(plan: ChallengePlan) -> SequentialTest:
    """Non-inferiority (a negative margin) is judged here from the test's interval; the test
    itself looks for a gain of at least max(margin, 0)."""
    return SequentialTest(
        alpha=plan.alpha,
        min_samples=plan.min_samples,
        higher_is_better=plan.metric == "accuracy",
        margin=max(plan.margin, 0.0),
    )


def _challenge_guardrails(plan: ChallengePlan, challenger: GroupStats | None) -> list[Limit]:
    limits = [Limit(name="error_rate", value=_failure_rate(challenger), limit=plan.max_error_rate)]
    if plan.max_latency_p99_ms is not None:
        p99 = _p99(challenger)
        limits.append(Limit(name="latency_p99_ms", value=p99, limit=plan.max_latency_p99_ms))
    return limits


def _arm(plan: ChallengePlan, group: GroupStats) -> tuple[int, int]:
    """(successes, trials) of one arm for the plan's metric."""
    if plan.metric == "accuracy":
        return group.correct, group.actuals
    return group.errors + group.timeouts, group.requests


def _judge(plan: ChallengePlan, decision: Decision, *, moved: bool) -> tuple[Outcome, str]:
    """The step's outcome from the test's decision, and why (a clause)."""
    low, high = decision.ci_low, decision.ci_high
    if plan.margin < 0 and not moved and low is not None and high is not None:
        sign = 1.0 if plan.metric == "accuracy" else -1.0
        gain_low, gain_high = sorted((sign * low, sign * high))
        allowed = f"by more than {-plan.margin:.4g} in {plan.metric}"
        if gain_low > plan.margin:
            return Outcome.PASS, f"the challenger is not worse than the champion {allowed}"
        if gain_high < plan.margin:
            return Outcome.FAIL, f"the challenger is worse than the champion {allowed}"
        return Outcome.INCONCLUSIVE, decision.reason
    if decision.verdict == "better":
        return Outcome.PASS, f"the challenger beats the champion: {decision.reason}"
    if decision.verdict == "worse":
        return Outcome.FAIL, f"the challenger is worse than the champion: {decision.reason}"
    return Outcome.INCONCLUSIVE, decision.reason


def _undecided(
    plan: ChallengePlan, elapsed_s: float, why: str, evidence: dict[str, JSON]
) -> Verdict:
    if elapsed_s >= plan.step_timeout_s:
        reason = f"still undecided after the {plan.step_timeout_s:g} s step timeout: {why}."
        return _verdict(Outcome.FAIL, reason, evidence)
    return _verdict(Outcome.INCONCLUSIVE, f"Waiting for more evidence: {why}.", evidence)


# -- bake (after promotion) --------------------------------------------------------------


def bake_gate(
    plan: BakePlan,
    champion: GroupStats | None,
    *,
    previous: GroupStats | None,
    baseline_accuracy: float | None,
    elapsed_s: float,
    mirrored: bool = False,
) -> Verdict:
    """Fail on any guardrail breach of the new champion; pass once `duration_s` has gone by
    without one.

    `previous` is the former champion (now standby): when it breaches every limit the new
    one does, the trouble is not the new version, and the evidence says `both_bad` so the
    rollout is aborted rather than blamed on it. With `mirrored`, `previous` is what it
    answered in shadow on a share of the same live traffic since the bake began (it never
    falls back, so its errors stand for the new champion's fallbacks too); without, its
    record before the promotion. `baseline_accuracy` is the former champion's accuracy
    before promotion."""
    limits = _bake_limits(plan, champion, baseline_accuracy)
    evidence: dict[str, JSON] = {
        "elapsed_s": elapsed_s,
        "duration_s": plan.duration_s,
        "min_requests": BAKE_MIN_REQUESTS,
        "min_actuals": MIN_ACTUALS,
        "baseline_accuracy": baseline_accuracy,
        "checks": _checks(limits),
        "champion": _snapshot(champion),
        "previous": _snapshot(previous),
        "previous_mirrored": mirrored,
        "both_bad": False,
    }
    breached = [limit for limit in limits if limit.breached]
    if breached:
        return _bake_failure(plan, breached, previous, baseline_accuracy, evidence, mirrored)
    if elapsed_s >= plan.duration_s:
        reason = (
            f"No guardrail breached in {plan.duration_s:g} s of baking "
            f"({_requests(champion)} requests answered)."
        )
        return _verdict(Outcome.PASS, reason, evidence)
    reason = f"Baking: {elapsed_s:.0f} of {plan.duration_s:g} s, no breach so far."
    return _verdict(Outcome.INCONCLUSIVE, reason, evidence)


def _bake_limits(
    plan: BakePlan,
    group: GroupStats | None,
    baseline: float | None,
    min_requests: int = BAKE_MIN_REQUESTS,
) -> list[Limit]:
    counted = _requests(group) >= min_requests
    fallbacks = group.fallback_rate if group is not None else None
    limits = [
        Limit(name="error_rate", value=_failure_rate(group), limit=plan.max_error_rate),
        Limit(name="fallback_rate", value=fallbacks, limit=plan.max_fallback_rate),
    ]
    if plan.max_latency_p99_ms is not None:
        p99 = _p99(group)
        limits.append(Limit(name="latency_p99_ms", value=p99, limit=plan.max_latency_p99_ms))
    limits = [replace(limit, counted=counted) for limit in limits]
    if plan.max_accuracy_drop is not None:  # counted by actuals, not requests
        drop = _drop(baseline, _accuracy(group))
        limits.append(Limit(name="accuracy_drop", value=drop, limit=plan.max_accuracy_drop))
    return limits


def _bake_failure(
    plan: BakePlan,
    breached: list[Limit],
    previous: GroupStats | None,
    baseline: float | None,
    evidence: dict[str, JSON],
    mirrored: bool = False,
) -> Verdict:
    least = MIRROR_MIN_REQUESTS if mirrored else BAKE_MIN_REQUESTS
    before = {limit.name: limit for limit in _bake_limits(plan, previous, baseline, least)}
    # a shadow never falls back: the new champion's fallbacks are matched by its errors
    counterpart = {"fallback_rate": "error_rate"} if mirrored else {}
    shared = [
        before[counterpart.get(limit.name, limit.name)]
        for limit in breached
        if before[counterpart.get(limit.name, limit.name)].breached
    ]
    evidence["previous_checks"] = _checks(list(before.values()))
    reason = _breaches("After promotion, the new champion's", breached)
    if previous is not None and len(shared) == len(breached):
        evidence["both_bad"] = True
        values = ", ".join(limit.shown() for limit in {id(x): x for x in shared}.values())
        whose = (
            "the previous champion, answering the same traffic in shadow, breaches them too"
            if mirrored
            else "the previous champion breached them too before the promotion"
        )
        reason += f"; {whose} ({values}), so the cause is not the new version"
    return _verdict(Outcome.FAIL, reason + ".", evidence)


# -- offline validation ------------------------------------------------------------------


def validation_verdict(plan: ValidatePlan, report: ValidationReport) -> Verdict:
    """Judge an offline evaluation of the candidate (and of the champion, on the same rows).

    Without a champion, the checks against it are skipped. A failed check fails at once; a
    missing number leaves the verdict inconclusive.
    """
    n = report.n
    candidate, champion = report.candidate, report.champion
    limits, missing = _validation_limits(plan, report)
    evidence: dict[str, JSON] = {
        "n": n,
        "min_rows": plan.min_rows,
        "checks": _checks(limits),
        "missing": missing,
        "candidate": {name: _number(candidate, name) for name in candidate},
        "champion": None if champion is None else {k: _number(champion, k) for k in champion},
    }
    if n < plan.min_rows:
        reason = f"Only {n} labelled rows to validate on; at least {plan.min_rows} are needed."
        return _verdict(Outcome.INCONCLUSIVE, reason, evidence)
    evidence.update(report.measured())
    breached = [limit for limit in limits if limit.breached]
    if breached:
        return _verdict(Outcome.FAIL, _breaches("The candidate's", breached) + ".", evidence)
    robustness = report.robustness
    if plan.robustness and robustness is not None and robustness.failures:
        why: dict[str, list[str]] = {}
        for failure in robustness.failed:
            why.setdefault(failure.candidate, []).append(failure.probe)
        shown = "; ".join(
            f"{', '.join(probes[:3])}{' and more' if len(probes) > 3 else ''}: {message}"
            for message, probes in list(why.items())[:3]
        )
        reason = (
            f"The candidate fails {robustness.failures} of {robustness.probes} "
            f"broken rows that the champion answers ({shown})."
        )
        return _verdict(Outcome.FAIL, reason, evidence)
    if missing:
        reason = f"Cannot judge the candidate without {', '.join(missing)}."
        return _verdict(Outcome.INCONCLUSIVE, reason, evidence)
    return _verdict(Outcome.PASS, f"The candidate met every limit on {n} rows.", evidence)


def _validation_limits(
    plan: ValidatePlan, report: ValidationReport
) -> tuple[list[Limit], list[str]]:
    candidate, champion = report.candidate, report.champion
    limits = [
        *(
            Limit(name=name, value=_number(candidate, name), limit=floor, upper=False)
            for name, floor in plan.min_metrics.items()
        ),
        *(
            Limit(name=name, value=_number(candidate, name), limit=ceiling)
            for name, ceiling in plan.max_metrics.items()
        ),
    ]
    missing = [f"its {limit.name}" for limit in limits if limit.value is None]
    if champion is not None:
        for name, allowed in plan.max_regression.items():
            ours, theirs = _number(candidate, name), _number(champion, name)
            worse = _drop(ours, theirs) if name in LOWER_IS_BETTER else _drop(theirs, ours)
            limits.append(Limit(name=f"{name}_regression", value=worse, limit=allowed))
            if worse is None:
                missing.append(f"the {name} of both versions")
        if plan.min_agreement > 0:
            agreement = report.agreement
            limits.append(
                Limit(name="agreement", value=agreement, limit=plan.min_agreement, upper=False)
            )
            if agreement is None:
                missing.append("its agreement with the champion")
        if plan.min_correlation > 0:
            correlation = report.correlation
            limits.append(Limit(name="correlation", value=correlation,
                                limit=plan.min_correlation, upper=False))  # fmt: skip
            if correlation is None:
                missing.append("scores to correlate with the champion's")
    if plan.max_latency_ms is not None:
        latency = report.latency_ms
        limits.append(Limit(name="latency_ms", value=latency, limit=plan.max_latency_ms))
        if latency is None:
            missing.append("its latency")
    return limits, missing
