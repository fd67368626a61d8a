from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson
import pytest

from turnout.lifecycle.gates import (
    Outcome,
    Verdict,
    bake_gate,
    challenge_gate,
    validation_verdict,
    warmup_gate,
)
from turnout.lifecycle.plans import BakePlan, ChallengePlan, ValidatePlan, WarmupPlan
from turnout.lifecycle.reports import ValidationReport
from turnout.monitoring.groups import GroupStats
from turnout.types import JSON

PASS, FAIL, WAIT = Outcome.PASS, Outcome.FAIL, Outcome.INCONCLUSIVE


def group(
    role: str = "shadow",
    *,
    version: int = 2,
    requests: int = 0,
    errors: int = 0,
    timeouts: int = 0,
    fallbacks: int = 0,
    p99: float | None = 10.0,
    actuals: int = 0,
    correct: int = 0,
    **extra: JSON,
) -> GroupStats:
    """A group as `Monitor.groups` lists it (built from the metrics API's entry)."""

    def rate(count: int, total: int) -> float | None:
        return count / total if total else None

    return GroupStats.from_dict(
        {
            "deployment": "churn-prod",
            "version": version,
            "role": role,
            "requests": requests,
            "ok": requests - errors - timeouts - fallbacks,
            "errors": errors,
            "timeouts": timeouts,
            "fallbacks": fallbacks,
            "error_rate": rate(errors, requests),
            "timeout_rate": rate(timeouts, requests),
            "fallback_rate": rate(fallbacks, requests),
            "latency_p50_ms": None if p99 is None else p99 / 2,
            "latency_p95_ms": p99,
            "latency_p99_ms": p99,
            "first_ts": None,
            "last_ts": None,
            "actuals": actuals,
            "correct": correct,
            "accuracy": rate(correct, actuals),
            "performance": None,
            **extra,
        }
    )


def champion(**kwargs: Any) -> GroupStats:
    return group("champion", **{"version": 1, **kwargs})


def serialisable(verdict: Verdict) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads(orjson.dumps(verdict.to_dict()))
    return data


# -- Verdict -------------------------------------------------------------------------------


def test_verdict_round_trips() -> None:
    verdict = Verdict("pass", "Fine.", {"n": 3})
    assert verdict.outcome is Outcome.PASS
    assert verdict.to_dict() == {"outcome": "pass", "reason": "Fine.", "evidence": {"n": 3}}
    assert Verdict.from_dict(verdict.to_dict()) == verdict


def test_verdict_refuses_unknown_outcomes() -> None:
    with pytest.raises(ValueError, match="'maybe' is not a valid Outcome"):
        Verdict("maybe", "?")


def test_the_failure_rate_counts_errors_and_timeouts() -> None:
    some = group(requests=200, errors=3, timeouts=1, fallbacks=5)
    assert some.failure_rate == 0.02
    assert some.error_rate == 0.015
    assert (some.timeout_rate, some.fallback_rate) == (0.005, 0.025)
    assert group(requests=0).failure_rate is None


def test_a_group_round_trips_through_the_api_shape() -> None:
    some = group(requests=200, errors=3, timeouts=1, fallbacks=5, actuals=10, correct=9)
    assert GroupStats.from_dict(some.to_dict()) == some
    assert "performance" not in some.to_dict(performance=False)


# -- warm-up -------------------------------------------------------------------------------


def test_warmup_waits_for_enough_shadow_answers() -> None:
    plan = WarmupPlan()
    verdict = warmup_gate(
        plan, group(requests=50), champion(requests=50), timeout_ms=None, elapsed_s=30
    )
    assert verdict.outcome == WAIT
    assert verdict.reason == "Waiting for shadow answers: 50 of 200 so far."
    assert warmup_gate(plan, None, None, timeout_ms=None, elapsed_s=1).outcome == WAIT


def test_warmup_passes_within_every_limit() -> None:
    plan = WarmupPlan(max_latency_ratio=1.5)
    shadow = group(requests=250, errors=1, p99=12.0, actuals=120, correct=108)
    live = champion(requests=250, p99=10.0, actuals=120, correct=109)
    verdict = warmup_gate(plan, shadow, live, timeout_ms=100, elapsed_s=60)
    assert verdict.outcome == PASS
    evidence = serialisable(verdict)["evidence"]
    assert evidence["requests"] == 250
    assert evidence["min_requests"] == 200
    checks = evidence["checks"]
    assert checks["error_rate"] == {"value": 0.004, "max": 0.01, "ok": True}
    assert checks["latency_p99_ms"] == {"value": 12.0, "max": 100.0, "ok": True}
    assert checks["latency_ratio"] == {"value": 1.2, "max": 1.5, "ok": True}
    assert checks["accuracy_drop"]["max"] == 0.02
    assert checks["accuracy_drop"]["ok"] is True
    assert evidence["shadow"]["version"] == 2
    assert evidence["champion"]["latency_p99_ms"] == 10.0


def test_warmup_fails_on_errors_once_enough_requests_show_them() -> None:
    plan = WarmupPlan()
    few = warmup_gate(plan, group(requests=60, errors=6), None, timeout_ms=None, elapsed_s=5)
    assert few.outcome == WAIT
    assert few.to_dict()["evidence"]["checks"]["error_rate"]["ok"] is None
    many = warmup_gate(plan, group(requests=120, errors=6), None, timeout_ms=None, elapsed_s=9)
    assert many.outcome == FAIL
    assert many.reason == "In shadow, the version's error rate 5% is above the maximum of 1%."


def test_warmup_small_minimum_counts_breaches_sooner() -> None:
    plan = WarmupPlan(min_requests=20)
    verdict = warmup_gate(plan, group(requests=20, timeouts=2), None, timeout_ms=None, elapsed_s=5)
    assert verdict.outcome == FAIL


def test_warmup_latency_ceiling_defaults_to_the_deployment_timeout() -> None:
    shadow = group(requests=300, p99=150.0)
    verdict = warmup_gate(
        WarmupPlan(max_latency_ratio=None), shadow, None, timeout_ms=100, elapsed_s=60
    )
    assert verdict.outcome == FAIL
    assert "p99 latency 150 ms is above the maximum of 100 ms" in verdict.reason
    no_timeout = warmup_gate(WarmupPlan(), shadow, None, timeout_ms=None, elapsed_s=60)
    assert no_timeout.outcome == PASS
    own = WarmupPlan(max_latency_p99_ms=200.0, max_latency_ratio=None)
    assert warmup_gate(own, shadow, None, timeout_ms=100, elapsed_s=60).outcome == PASS


def test_warmup_fails_when_much_slower_than_the_champion() -> None:
    verdict = warmup_gate(
        WarmupPlan(max_latency_ratio=1.5),
        group(requests=300, p99=40.0),
        champion(requests=300, p99=20.0),
        timeout_ms=None,
        elapsed_s=60,
    )
    assert verdict.outcome == FAIL
    assert "relative to the champion's 2x is above the maximum of 1.5x" in verdict.reason


def test_warmup_ignores_the_ratio_at_a_few_milliseconds() -> None:
    verdict = warmup_gate(
        WarmupPlan(max_latency_ratio=1.5),
        group(requests=300, p99=3.0),
        champion(requests=300, p99=1.0),
        timeout_ms=None,
        elapsed_s=60,
    )
    assert verdict.outcome == PASS
    assert verdict.evidence["checks"]["latency_ratio"] == {"value": 3.0, "max": 1.5, "ok": None}


def test_warmup_agreement_is_checked_when_known() -> None:
    plan = WarmupPlan(min_agreement=0.9)
    low = group(requests=300, agreement_rate=0.8)
    verdict = warmup_gate(plan, low, champion(requests=300), timeout_ms=None, elapsed_s=60)
    assert verdict.outcome == FAIL
    assert "agreement with the champion 80% is below the minimum of 90%" in verdict.reason
    unknown = warmup_gate(
        plan, group(requests=300), champion(requests=300), timeout_ms=None, elapsed_s=60
    )
    assert unknown.outcome == PASS
    assert unknown.evidence["checks"]["agreement"]["value"] is None


def test_warmup_accuracy_drop_needs_actuals_on_both_sides() -> None:
    plan = WarmupPlan()
    live = champion(requests=300, actuals=200, correct=180)  # 0.90
    worse = group(requests=300, actuals=200, correct=170)  # 0.85
    verdict = warmup_gate(plan, worse, live, timeout_ms=None, elapsed_s=60)
    assert verdict.outcome == FAIL
    assert "accuracy drop 5% is above the maximum of 2%" in verdict.reason
    few = group(requests=300, actuals=50, correct=40)
    assert warmup_gate(plan, few, live, timeout_ms=None, elapsed_s=60).outcome == PASS


def test_warmup_fails_at_its_timeout_without_enough_answers() -> None:
    plan = WarmupPlan(timeout_s=600)
    verdict = warmup_gate(plan, group(requests=80), None, timeout_ms=None, elapsed_s=600)
    assert verdict.outcome == FAIL
    assert verdict.reason == (
        "Only 80 of the 200 shadow answers needed arrived within the 600 s timeout."
    )
    done = warmup_gate(plan, group(requests=200), None, timeout_ms=None, elapsed_s=900)
    assert done.outcome == PASS


# -- challenge -----------------------------------------------------------------------------


def arms(
    champion_correct: int, champion_n: int, challenger_correct: int, challenger_n: int
) -> tuple[GroupStats, GroupStats]:
    challenger = group(
        "challenger", requests=challenger_n, actuals=challenger_n, correct=challenger_correct
    )
    live = champion(requests=champion_n, actuals=champion_n, correct=champion_correct)
    return challenger, live


def test_challenge_waits_for_samples() -> None:
    plan = ChallengePlan()
    challenger, live = arms(80, 100, 90, 100)
    verdict, state = challenge_gate(plan, challenger, live, elapsed_s=60, test_state=None)
    assert verdict.outcome == WAIT
    assert verdict.reason.startswith("Waiting for more evidence: too few samples")
    assert verdict.evidence["samples"] == {"champion": 100, "challenger": 100}
    assert state["min_samples"] == 500
    orjson.dumps(state)


def test_challenge_waits_without_a_challenger() -> None:
    verdict, state = challenge_gate(
        ChallengePlan(), None, champion(requests=10), elapsed_s=1, test_state=None
    )
    assert verdict.outcome == WAIT
    assert "no answers from the challenger yet" in verdict.reason
    assert state["looks"] == 0


def test_challenge_passes_a_better_challenger() -> None:
    challenger, live = arms(800, 1000, 900, 1000)
    verdict, state = challenge_gate(
        ChallengePlan(), challenger, live, elapsed_s=600, test_state=None
    )
    assert verdict.outcome == PASS
    assert verdict.reason.startswith("The challenger beats the champion")
    evidence = serialisable(verdict)["evidence"]
    assert evidence["test"]["verdict"] == "better"
    assert evidence["successes"] == {"champion": 800, "challenger": 900}
    assert evidence["alpha"] == 0.05
    assert state["looks"] == 1


def test_challenge_fails_a_worse_challenger() -> None:
    challenger, live = arms(900, 1000, 800, 1000)
    verdict, _ = challenge_gate(ChallengePlan(), challenger, live, elapsed_s=600, test_state=None)
    assert verdict.outcome == FAIL
    assert verdict.reason.startswith("The challenger is worse than the champion")


def test_challenge_state_carries_over_looks() -> None:
    plan = ChallengePlan()
    first, state = challenge_gate(plan, *arms(80, 100, 90, 100), elapsed_s=10, test_state=None)
    assert first.outcome == WAIT
    second, state = challenge_gate(
        plan, *arms(850, 1000, 850, 1000), elapsed_s=20, test_state=state
    )
    assert second.outcome == WAIT
    assert state["looks"] == 1
    third, state = challenge_gate(
        plan, *arms(1700, 2000, 1700, 2000), elapsed_s=30, test_state=state
    )
    assert third.outcome == WAIT
    assert state["looks"] == 2


def test_challenge_fails_after_its_step_timeout() -> None:
    plan = ChallengePlan(step_timeout_s=3600)
    verdict, _ = challenge_gate(plan, *arms(850, 1000, 850, 1000), elapsed_s=3600, test_state=None)
    assert verdict.outcome == FAIL
    assert verdict.reason.startswith("Still undecided after the 3600 s step timeout")
    missing, _ = challenge_gate(plan, None, None, elapsed_s=4000, test_state=None)
    assert missing.outcome == FAIL


def test_challenge_guardrail_fails_at_once() -> None:
    challenger = group("challenger", requests=200, errors=10)
    verdict, state = challenge_gate(
        ChallengePlan(), challenger, champion(requests=2000), elapsed_s=30, test_state=None
    )
    assert verdict.outcome == FAIL
    assert verdict.reason == "The challenger's error rate 5% is above the maximum of 1%."
    assert verdict.evidence["checks"]["error_rate"] == {"value": 0.05, "max": 0.01, "ok": False}
    assert state["looks"] == 0


def test_challenge_guardrail_needs_enough_requests() -> None:
    challenger = group("challenger", requests=50, errors=5)
    verdict, _ = challenge_gate(
        ChallengePlan(), challenger, champion(requests=500), elapsed_s=30, test_state=None
    )
    assert verdict.outcome == WAIT


def test_challenge_latency_guardrail() -> None:
    plan = ChallengePlan(max_latency_p99_ms=50.0)
    challenger = group("challenger", requests=150, p99=80.0)
    verdict, _ = challenge_gate(
        plan, challenger, champion(requests=1500), elapsed_s=30, test_state=None
    )
    assert verdict.outcome == FAIL
    assert "p99 latency 80 ms is above the maximum of 50 ms" in verdict.reason


def test_challenge_never_passes_with_a_breached_guardrail() -> None:
    plan = ChallengePlan(min_samples=20)
    challenger = group("challenger", requests=50, errors=5, actuals=50, correct=50)
    live = champion(requests=1000, actuals=1000, correct=500)
    verdict, _ = challenge_gate(plan, challenger, live, elapsed_s=30, test_state=None)
    assert verdict.outcome == WAIT
    assert "but the challenger's error rate 10% is above the maximum of 1%" in verdict.reason


def test_challenge_on_error_rate() -> None:
    plan = ChallengePlan(metric="error_rate", max_error_rate=0.1)
    challenger = group("challenger", requests=2000, errors=10)
    live = champion(requests=2000, errors=100, timeouts=20)
    verdict, _ = challenge_gate(plan, challenger, live, elapsed_s=60, test_state=None)
    assert verdict.outcome == PASS
    assert verdict.evidence["successes"] == {"champion": 120, "challenger": 10}
    assert verdict.evidence["samples"] == {"champion": 2000, "challenger": 2000}
    worse, _ = challenge_gate(
        plan, replace(live, role="challenger"), challenger, elapsed_s=60, test_state=None
    )
    assert worse.outcome == FAIL


def test_challenge_positive_margin_asks_for_a_larger_gain() -> None:
    plan = ChallengePlan(margin=0.08)
    verdict, _ = challenge_gate(plan, *arms(800, 1000, 900, 1000), elapsed_s=60, test_state=None)
    assert verdict.outcome == WAIT


def test_challenge_negative_margin_is_non_inferiority() -> None:
    same = arms(1800, 2000, 1790, 2000)
    strict, _ = challenge_gate(ChallengePlan(), *same, elapsed_s=60, test_state=None)
    assert strict.outcome == WAIT
    lenient, _ = challenge_gate(ChallengePlan(margin=-0.05), *same, elapsed_s=60, test_state=None)
    assert lenient.outcome == PASS
    assert "not worse than the champion by more than 0.05 in accuracy" in lenient.reason
    much_worse, _ = challenge_gate(
        ChallengePlan(margin=-0.05), *arms(1800, 2000, 1500, 2000), elapsed_s=60, test_state=None
    )
    assert much_worse.outcome == FAIL


# -- bake ----------------------------------------------------------------------------------


def test_bake_waits_then_passes() -> None:
    plan = BakePlan(duration_s=600)
    healthy = champion(requests=500, errors=2, fallbacks=1)
    verdict = bake_gate(plan, healthy, previous=None, baseline_accuracy=None, elapsed_s=120)
    assert verdict.outcome == WAIT
    assert verdict.reason == "Baking: 120 of 600 s, no breach so far."
    done = bake_gate(plan, healthy, previous=None, baseline_accuracy=None, elapsed_s=600)
    assert done.outcome == PASS
    evidence = serialisable(done)["evidence"]
    assert evidence["both_bad"] is False
    assert evidence["checks"]["error_rate"] == {"value": 0.004, "max": 0.02, "ok": True}
    assert evidence["checks"]["fallback_rate"] == {"value": 0.002, "max": 0.01, "ok": True}


def test_bake_passes_without_traffic() -> None:
    verdict = bake_gate(BakePlan(), None, previous=None, baseline_accuracy=0.9, elapsed_s=600)
    assert verdict.outcome == PASS


@pytest.mark.parametrize(
    ("evidence", "plan", "reason"),
    [
        ({"errors": 4, "timeouts": 2}, BakePlan(), "error rate 6% is above the maximum of 2%"),
        ({"fallbacks": 5}, BakePlan(), "fallback rate 5% is above the maximum of 1%"),
        (
            {"p99": 300.0},
            BakePlan(max_latency_p99_ms=200.0),
            "p99 latency 300 ms is above the maximum of 200 ms",
        ),
    ],
)
def test_bake_fails_on_a_breach(evidence: dict[str, Any], plan: BakePlan, reason: str) -> None:
    bad = champion(requests=100, **evidence)
    verdict = bake_gate(plan, bad, previous=None, baseline_accuracy=None, elapsed_s=30)
    assert verdict.outcome == FAIL
    assert verdict.reason == f"After promotion, the new champion's {reason}."
    assert verdict.evidence["both_bad"] is False


def test_bake_breach_needs_enough_requests() -> None:
    bad = champion(requests=40, errors=20)
    verdict = bake_gate(BakePlan(), bad, previous=None, baseline_accuracy=None, elapsed_s=30)
    assert verdict.outcome == WAIT


def test_bake_accuracy_drop_waits_for_actuals() -> None:
    plan = BakePlan()
    few = champion(requests=500, actuals=60, correct=40)
    assert bake_gate(plan, few, previous=None, baseline_accuracy=0.9, elapsed_s=30).outcome == WAIT
    many = champion(requests=500, actuals=200, correct=160)  # 0.80
    verdict = bake_gate(plan, many, previous=None, baseline_accuracy=0.9, elapsed_s=30)
    assert verdict.outcome == FAIL
    assert "accuracy drop 10% is above the maximum of 5%" in verdict.reason
    assert verdict.evidence["baseline_accuracy"] == 0.9
    unknown = bake_gate(plan, many, previous=None, baseline_accuracy=None, elapsed_s=30)
    assert unknown.outcome == WAIT


def test_bake_both_bad_when_the_previous_champion_breaches_too() -> None:
    new = champion(version=2, requests=200, errors=10)
    old = group("standby", version=1, requests=100, errors=6)
    verdict = bake_gate(BakePlan(), new, previous=old, baseline_accuracy=None, elapsed_s=60)
    assert verdict.outcome == FAIL
    assert verdict.evidence["both_bad"] is True
    assert "the previous champion breached them too before the promotion (error rate 6%)" in (
        verdict.reason
    )
    assert verdict.evidence["previous_checks"]["error_rate"]["ok"] is False
    assert serialisable(verdict)["evidence"]["previous"]["version"] == 1


def test_bake_blames_the_new_version_when_only_it_breaches() -> None:
    new = champion(version=2, requests=200, errors=10, fallbacks=10)
    healthy_old = group("standby", version=1, requests=100)
    verdict = bake_gate(BakePlan(), new, previous=healthy_old, baseline_accuracy=None, elapsed_s=60)
    assert verdict.outcome == FAIL
    assert verdict.evidence["both_bad"] is False
    partly_bad_old = group("standby", version=1, requests=100, errors=6)
    partly = bake_gate(
        BakePlan(), new, previous=partly_bad_old, baseline_accuracy=None, elapsed_s=60
    )
    assert partly.evidence["both_bad"] is False
    quiet_old = group("standby", version=1, requests=10, errors=6)
    quiet = bake_gate(BakePlan(), new, previous=quiet_old, baseline_accuracy=None, elapsed_s=60)
    assert quiet.evidence["both_bad"] is False


def test_bake_both_bad_when_the_mirrored_previous_champion_fails_the_same_traffic() -> None:
    """The new champion falls back and errs; the previous one, answering a mirrored 10% of
    the same traffic in shadow, errs as often: a shared cause (its errors stand for the
    fallbacks, which a shadow never has)."""
    new = champion(version=2, requests=300, errors=30, fallbacks=30)
    mirror = group("shadow", version=1, requests=30, errors=4)
    verdict = bake_gate(BakePlan(), new, previous=mirror, baseline_accuracy=None,
                        elapsed_s=60, mirrored=True)  # fmt: skip
    assert verdict.outcome == FAIL
    assert verdict.evidence["both_bad"] is True
    assert verdict.evidence["previous_mirrored"] is True
    assert "answering the same traffic in shadow, breaches them too" in verdict.reason


def test_bake_blames_the_new_version_when_its_mirrored_predecessor_is_fine() -> None:
    new = champion(version=2, requests=300, errors=30)
    healthy = group("shadow", version=1, requests=30)
    verdict = bake_gate(BakePlan(), new, previous=healthy, baseline_accuracy=None,
                        elapsed_s=60, mirrored=True)  # fmt: skip
    assert verdict.evidence["both_bad"] is False
    thin = group("shadow", version=1, requests=19, errors=19)  # below 20 answers: no verdict
    quiet = bake_gate(BakePlan(), new, previous=thin, baseline_accuracy=None,
                      elapsed_s=60, mirrored=True)  # fmt: skip
    assert quiet.evidence["both_bad"] is False


# -- validation ----------------------------------------------------------------------------

STRICT = ValidatePlan(
    min_rows=100,
    min_metrics={"accuracy": 0.8},
    max_metrics={"log_loss": 0.5},
    max_regression={"accuracy": 0.02, "log_loss": 0.05},
    min_agreement=0.9,
    max_latency_ms=20.0,
)


def report(**changes: Any) -> ValidationReport:
    base: dict[str, Any] = {
        "candidate": {"accuracy": 0.9, "log_loss": 0.3},
        "champion": {"accuracy": 0.91, "log_loss": 0.28},
        "agreement": 0.95,
        "latency_ms": 5.0,
        "n": 500,
    }
    return ValidationReport(scored=True, **(base | changes))


def test_validation_passes() -> None:
    verdict = validation_verdict(STRICT, report())
    assert verdict.outcome == PASS
    assert verdict.reason == "The candidate met every limit on 500 rows."
    checks = serialisable(verdict)["evidence"]["checks"]
    assert checks["accuracy"] == {"value": 0.9, "min": 0.8, "ok": True}
    assert checks["log_loss"] == {"value": 0.3, "max": 0.5, "ok": True}
    assert checks["accuracy_regression"]["max"] == 0.02
    assert checks["accuracy_regression"]["value"] == pytest.approx(0.01)
    assert checks["agreement"] == {"value": 0.95, "min": 0.9, "ok": True}
    assert checks["latency_ms"] == {"value": 5.0, "max": 20.0, "ok": True}


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"candidate": {"accuracy": 0.7, "log_loss": 0.3}}, "accuracy 0.7 is below the minimum"),
        ({"candidate": {"accuracy": 0.9, "log_loss": 0.6}}, "log loss 0.6 is above the maximum"),
        ({"champion": {"accuracy": 0.95, "log_loss": 0.28}}, "accuracy regression 0.05 is above"),
        ({"champion": {"accuracy": 0.9, "log_loss": 0.2}}, "log loss regression 0.1 is above"),
        ({"agreement": 0.5}, "agreement with the champion 50% is below the minimum of 90%"),
        ({"latency_ms": 25.0}, "latency 25 ms is above the maximum of 20 ms"),
    ],
)
def test_validation_fails(changes: dict[str, Any], reason: str) -> None:
    verdict = validation_verdict(STRICT, report(**changes))
    assert verdict.outcome == FAIL
    assert reason in verdict.reason


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"n": 0}, "Only 0 labelled rows to validate on; at least 100 are needed."),
        ({"n": 99}, "Only 99 labelled rows"),
        ({"candidate": {"log_loss": 0.3}}, "without its accuracy, the accuracy of both versions"),
        ({"agreement": None}, "without its agreement with the champion"),
        ({"latency_ms": None}, "without its latency"),
    ],
)
def test_validation_inconclusive(changes: dict[str, Any], reason: str) -> None:
    verdict = validation_verdict(STRICT, report(**changes))
    assert verdict.outcome == WAIT
    assert reason in verdict.reason


def test_validation_failure_outranks_missing_numbers() -> None:
    verdict = validation_verdict(STRICT, report(latency_ms=None, agreement=0.1))
    assert verdict.outcome == FAIL


def test_validation_without_a_champion_skips_comparisons() -> None:
    verdict = validation_verdict(STRICT, report(champion=None, agreement=None))
    assert verdict.outcome == PASS
    assert "accuracy_regression" not in verdict.evidence["checks"]


def test_validation_reads_metrics_with_intervals() -> None:
    interval = {"value": 0.7, "ci_low": 0.65, "ci_high": 0.75}
    verdict = validation_verdict(STRICT, report(candidate={"accuracy": interval, "log_loss": 0.3}))
    assert verdict.outcome == FAIL
    assert verdict.evidence["candidate"]["accuracy"] == 0.7


def test_validation_with_an_empty_plan_needs_only_rows() -> None:
    plan = ValidatePlan(min_rows=1)
    assert validation_verdict(plan, ValidationReport(n=3)).outcome == PASS
    assert validation_verdict(plan, ValidationReport(n=0)).outcome == WAIT
    assert validation_verdict(plan, ValidationReport()).outcome == WAIT
