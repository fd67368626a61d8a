"""Rollout plans: the steps a version goes through on its way to production, and their gates.

A plan is written in YAML (or sent as JSON) and validated here once, before a rollout
starts; every section but `bake` is optional, and a section left out is a step skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from turnout.errors import BadRequest
from turnout.lifecycle import shares
from turnout.lifecycle.specs import SpecKind
from turnout.monitoring.metrics import CLASSIFICATION_METRICS, REGRESSION_METRICS
from turnout.types import JSON

LOWER_IS_BETTER = frozenset({"log_loss", "mae", "rmse"})
"""Quality metrics where a smaller value is the better model."""
METRICS = frozenset(CLASSIFICATION_METRICS + REGRESSION_METRICS)
HIGHER_IS_BETTER = METRICS - LOWER_IS_BETTER


def _rate(value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"must be a share between 0 and 1 (e.g. 0.01 for 1%), not {value:g}")
    return value


def _positive(value: float) -> float:
    if value <= 0:
        raise ValueError(f"must be greater than 0, not {value:g}")
    return value


def _not_negative(value: float) -> float:
    if value < 0:
        raise ValueError(f"must be 0 or more, not {value:g}")
    return value


def _at_least_one(value: int) -> int:
    if value < 1:
        raise ValueError(f"must be at least 1, not {value}")
    return value


def _checked(problem: Callable[[float], str | None]) -> Callable[[float], float]:
    def check(value: float) -> float:
        found = problem(value)
        if found is not None:
            raise ValueError(found)
        return value

    return check


_share = _checked(shares.challenger_problem)
_shadow_share = _checked(shares.shadow_problem)
_mirror_share = _checked(shares.mirror_problem)


Rate = Annotated[float, AfterValidator(_rate)]
"""A share in [0, 1]."""
Positive = Annotated[float, AfterValidator(_positive)]
Seconds = Annotated[float, AfterValidator(_positive)]
Millis = Annotated[float, AfterValidator(_positive)]
Count = Annotated[int, AfterValidator(_at_least_one)]
Percent = Annotated[float, AfterValidator(_share)]


class _Section(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, allow_inf_nan=False, use_attribute_docstrings=True
    )


class ValidatePlan(_Section):
    """Offline check of the candidate against the champion on the same labelled rows."""

    holdout: str | None = None
    """A CSV or Parquet file on the server (the model's input columns and a label column)
    to score both versions on; None scores the deployment's recent logged traffic that has
    actuals, where the champion's logged answers are compared."""
    label_column: str = "actual"
    """The holdout file's column holding the true value."""
    min_rows: Count = 100
    """Labelled rows needed before the check can pass; fewer leave it inconclusive."""
    min_metrics: dict[str, float] = Field(default_factory=dict)
    """Floors for metrics where higher is better, e.g. `{accuracy: 0.8}`."""
    max_metrics: dict[str, float] = Field(default_factory=dict)
    """Ceilings for metrics where lower is better, e.g. `{log_loss: 0.5}`."""
    max_regression: dict[str, float] = Field(default_factory=dict)
    """How much worse than the champion each metric may be, in the metric's own units
    (e.g. `{accuracy: 0.02}` allows 0.91 against 0.93)."""
    min_agreement: Rate = 0.0
    """Share of rows where the candidate gives the champion's label; 0 skips the check."""
    min_correlation: Rate = 0.0
    """Floor on the correlation of the two versions' scores (numbers, or class
    probabilities); 0 skips the check."""
    max_latency_ms: Millis | None = None
    """Ceiling on the candidate's mean latency per row during the check."""
    robustness: bool = True
    """Send both versions rows with one column missing or far out of range: the candidate
    fails if it raises or answers NaN where the champion answers."""

    @field_validator("min_metrics")
    @classmethod
    def _floors(cls, value: dict[str, float]) -> dict[str, float]:
        return _check_metrics(value, HIGHER_IS_BETTER, "max_metrics")

    @field_validator("max_metrics")
    @classmethod
    def _ceilings(cls, value: dict[str, float]) -> dict[str, float]:
        return _check_metrics(value, LOWER_IS_BETTER, "min_metrics")

    @field_validator("max_regression")
    @classmethod
    def _regressions(cls, value: dict[str, float]) -> dict[str, float]:
        _check_metrics(value, METRICS, "")
        negative = sorted(name for name, limit in value.items() if limit < 0)
        if negative:
            raise ValueError(f"must be 0 or more (an allowed worsening): {', '.join(negative)}")
        return value


def _check_metrics(
    value: dict[str, float], allowed: frozenset[str], other: str
) -> dict[str, float]:
    for name in value:
        if name in allowed:
            continue
        if name in METRICS:
            better = "lower" if name in LOWER_IS_BETTER else "higher"
            raise ValueError(f"{better} is better for {name}; put it under {other}")
        raise ValueError(f"unknown metric {name!r}; known: {', '.join(sorted(allowed))}")
    return value


class WarmupPlan(_Section):
    """The version answers a copy of live requests in shadow; its answers are never
    returned, only logged and compared with the champion's."""

    share: Annotated[float, AfterValidator(_shadow_share)] = 100.0
    """Percent of live requests mirrored to the version."""
    min_requests: Count = 200
    """Shadow answers needed before the step can pass."""
    max_error_rate: Rate = 0.01
    """Ceiling on (errors + timeouts) / requests."""
    max_latency_p99_ms: Millis | None = None
    """Ceiling on the shadow's p99 latency; None uses the deployment's timeout, if any."""
    max_latency_ratio: Annotated[float, AfterValidator(_positive)] | None = None
    """Ceiling on shadow p99 / champion p99; None (the default) skips the check. A shadow
    runs at a low CPU priority and on merged copies, so on a busy machine its latency
    reads several times higher than it will be as a challenger, where the challenge step's
    `max_latency_p99_ms` checks it on live traffic."""
    min_agreement: Rate = 0.0
    """Floor on the share of requests where the shadow gives the champion's answer."""
    max_accuracy_drop: Rate | None = 0.02
    """Ceiling on champion accuracy - shadow accuracy, once both have actuals."""
    timeout_s: Seconds = 600.0
    """The step fails if it has not passed by then."""


class ChallengePlan(_Section):
    """The version answers a growing share of live traffic beside the champion; a
    sequential test decides, at every look, whether it is better, worse or undecided."""

    steps: list[Percent] = Field(default_factory=lambda: [10.0, 50.0])
    """Percent of live traffic the challenger answers at each step, strictly increasing."""
    min_samples: Count = 500
    """Samples per arm, per step, before the test may decide."""
    metric: Literal["accuracy", "error_rate"] = "accuracy"
    """What the test compares: accuracy against actuals, or error_rate when no actuals
    are expected."""
    alpha: float = 0.05
    """Chance of a wrong decision the test allows, over all its looks."""
    margin: float = 0.0
    """The challenger must beat the champion by more than this, in the metric's units;
    a negative margin asks only that it be no worse than that (non-inferiority)."""
    max_error_rate: Rate = 0.01
    """Guardrail checked at every look: ceiling on (errors + timeouts) / requests."""
    max_latency_p99_ms: Millis | None = None
    """Guardrail checked at every look: ceiling on the challenger's p99 latency."""
    min_step_s: Annotated[float, AfterValidator(_not_negative)] = 0.0
    """A step passes no sooner than this, even when the test has decided (to take in a
    whole daily cycle, say); a failing challenger is still stopped at once."""
    step_timeout_s: Seconds = 3600.0
    """A step still undecided after this long fails."""

    @field_validator("steps")
    @classmethod
    def _increasing(cls, value: list[float]) -> list[float]:
        if not value:
            raise ValueError("must list at least one share; leave out `challenge` to skip it")
        for i in range(1, len(value)):
            if value[i] <= value[i - 1]:
                raise ValueError(
                    f"must increase strictly: steps[{i}] = {value[i]:g} "
                    f"does not exceed steps[{i - 1}] = {value[i - 1]:g}"
                )
        return value

    @field_validator("alpha")
    @classmethod
    def _alpha(cls, value: float) -> float:
        if not 0.0 < value < 0.5:
            raise ValueError(f"must be between 0 and 0.5 (e.g. 0.05), not {value:g}")
        return value

    @field_validator("margin")
    @classmethod
    def _margin(cls, value: float) -> float:
        if not -1.0 < value < 1.0:
            raise ValueError(f"must be between -1 and 1 (a difference of rates), not {value:g}")
        return value


class BakePlan(_Section):
    """After promotion the new champion is watched; a guardrail breach rolls back."""

    duration_s: Seconds = 600.0
    """How long the new champion must run without a breach."""
    max_error_rate: Rate = 0.02
    """Ceiling on (errors + timeouts) / requests."""
    max_fallback_rate: Rate = 0.01
    """Ceiling on the share of requests answered with the fallback value."""
    max_latency_p99_ms: Millis | None = None
    """Ceiling on p99 latency; None skips the check."""
    max_accuracy_drop: Rate | None = 0.05
    """Ceiling on the drop from the champion's accuracy before promotion, once actuals
    arrive; None skips the check."""
    check_interval_s: Seconds = 5.0
    """How often the guardrails are evaluated."""
    mirror_previous: Annotated[float, AfterValidator(_mirror_share)] = 10.0
    """Percent of live requests also sent, in shadow, to the previous champion while
    baking. At a breach, its own errors on the same traffic tell a trouble both versions
    share (abort) from the new version's own (roll back); 0 turns it off, and then only the
    previous champion's record before the promotion is compared."""


class ApprovePlan(_Section):
    """A person approves (`turnout rollout approve`) before the version is promoted."""

    separate: bool = True
    """The token that started the rollout may not approve it (separation of duties)."""


class Plan(_Section):
    """The whole journey of one version: validate -> warmup -> challenge -> approve ->
    promote -> bake. A section left out (or null, or false) is skipped; `true` or `{}`
    takes its defaults. Promote and bake always happen."""

    validation: ValidatePlan | None = Field(default=None, alias="validate")
    """Offline check against the champion; None skips it."""
    warmup: WarmupPlan | None = None
    """Shadow step; None skips it."""
    challenge: ChallengePlan | None = None
    """Champion/challenger steps; None skips them."""
    approve: ApprovePlan | None = None
    """Wait for a person to approve before promoting; None skips it."""
    bake: BakePlan = Field(default_factory=BakePlan)
    """Guardrails watched after promotion."""

    model_config = ConfigDict(validate_by_name=True, validate_by_alias=True)

    @field_validator("validation", "warmup", "challenge", "approve", mode="before")
    @classmethod
    def _switch(cls, value: Any) -> Any:
        if value is True:
            return {}
        if value is False:
            return None
        return value

    @field_validator("bake", mode="before")
    @classmethod
    def _always_bake(cls, value: Any) -> Any:
        if value is True:
            return {}
        if value is None or value is False:
            raise ValueError("cannot be skipped: it is what rolls a bad promotion back")
        return value

    @classmethod
    def parse(cls, data: object) -> Plan:
        """A plan from YAML text or from an already parsed mapping; every problem is
        reported in one BadRequest."""
        return PLAN_SPEC.parse(data)

    @classmethod
    def from_dict(cls, data: object) -> Plan:
        """Validate a parsed plan; every problem is reported in one BadRequest."""
        return PLAN_SPEC.validate(data)

    @classmethod
    def from_yaml(cls, text: str) -> Plan:
        return PLAN_SPEC.parse(text)

    def to_dict(self) -> dict[str, JSON]:
        return self.model_dump(mode="json", by_alias=True)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def steps(self) -> list[str]:
        """Names of this plan's steps in order, e.g. `challenge:10` for the 10% step."""
        names = []
        if self.validation is not None:
            names.append("validate")
        if self.warmup is not None:
            names.append("warmup")
        if self.challenge is not None:
            names += [f"challenge:{percent:g}" for percent in self.challenge.steps]
        if self.approve is not None:
            names.append("approve")
        return [*names, "promote", "bake"]


def split_step(name: str) -> tuple[str, float | None]:
    """`challenge:10` -> ("challenge", 10.0); any other step -> (name, None)."""
    kind, _, percent = name.partition(":")
    return kind, float(percent) if percent else None


DEFAULT_PLAN = Plan(
    validation=None,  # needs labelled traffic (actuals): a plan opts in with `validate:`
    warmup=WarmupPlan(),
    challenge=ChallengePlan(),
    approve=None,
    bake=BakePlan(),
)
"""Used when a rollout starts without a plan."""


PLAN_SPEC = SpecKind(
    model=Plan,
    noun="plan",
    short="plan",
    keys="of sections (validate, warmup, challenge, approve, bake)",
    root="plan",
    empty="the plan is empty; give at least one section, or none at all to use the default plan",
)


def plan_error(error: ValidationError) -> BadRequest:
    """One readable message naming each problem's place in the plan."""
    return PLAN_SPEC.error(error)
