from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from turnout.errors import BadRequest
from turnout.lifecycle.plans import (
    DEFAULT_PLAN,
    BakePlan,
    ChallengePlan,
    Plan,
    ValidatePlan,
    WarmupPlan,
    plan_error,
    split_step,
)

FULL = """
validate:
  holdout: null
  min_metrics: {accuracy: 0.8}
  max_metrics: {log_loss: 0.5}
  max_regression: {accuracy: 0.02}
  min_agreement: 0.9
  max_latency_ms: 20
warmup:
  min_requests: 300
  max_error_rate: 0.01
  max_latency_p99_ms: null
  max_latency_ratio: 1.5
  min_agreement: 0.0
  max_accuracy_drop: 0.02
  timeout_s: 600
challenge:
  steps: [5, 25, 50]
  min_samples: 500
  metric: accuracy
  alpha: 0.05
  margin: 0.0
  max_error_rate: 0.01
  max_latency_p99_ms: 250
  step_timeout_s: 3600
approve: true
bake:
  duration_s: 900
  max_error_rate: 0.02
  max_fallback_rate: 0.01
  max_latency_p99_ms: null
  max_accuracy_drop: 0.05
  check_interval_s: 5
"""


def test_default_plan_is_production_ready() -> None:
    plan = DEFAULT_PLAN
    assert plan.validation is None  # until holdout validation is available
    assert plan.warmup is not None
    assert (plan.warmup.min_requests, plan.warmup.timeout_s) == (200, 600.0)
    assert plan.challenge is not None
    assert plan.challenge.steps == [10.0, 50.0]
    assert (plan.challenge.min_samples, plan.challenge.step_timeout_s) == (500, 3600.0)
    assert plan.approve is None
    assert plan.bake.duration_s == 600.0
    assert plan.steps() == ["warmup", "challenge:10", "challenge:50", "promote", "bake"]


def test_default_plan_round_trips() -> None:
    assert Plan.from_dict(DEFAULT_PLAN.to_dict()) == DEFAULT_PLAN
    assert Plan.model_validate(DEFAULT_PLAN.to_dict()) == DEFAULT_PLAN
    assert Plan.from_yaml(DEFAULT_PLAN.to_yaml()) == DEFAULT_PLAN


def test_full_plan_parses_and_round_trips() -> None:
    plan = Plan.from_yaml(FULL)
    assert plan.validation is not None
    assert plan.validation.min_metrics == {"accuracy": 0.8}
    assert plan.validation.max_latency_ms == 20.0
    assert plan.warmup is not None
    assert plan.warmup.min_requests == 300
    assert plan.challenge is not None
    assert plan.challenge.max_latency_p99_ms == 250.0
    assert plan.bake.duration_s == 900.0
    data = plan.to_dict()
    assert data["validate"]["min_agreement"] == 0.9
    assert "validation" not in data
    assert Plan.from_dict(data) == plan
    assert Plan.parse(FULL) == Plan.parse(data) == plan


def test_steps_in_order() -> None:
    assert Plan.from_yaml(FULL).steps() == [
        "validate",
        "warmup",
        "challenge:5",
        "challenge:25",
        "challenge:50",
        "approve",
        "promote",
        "bake",
    ]


@pytest.mark.parametrize(
    ("text", "steps"),
    [
        ("bake: {}", ["promote", "bake"]),
        ("approve: true", ["approve", "promote", "bake"]),
        ("warmup: {}", ["warmup", "promote", "bake"]),
        ("warmup: true\nvalidate: false", ["warmup", "promote", "bake"]),
        ("validate: true\nwarmup: null", ["validate", "promote", "bake"]),
        ("challenge: {steps: [2.5, 20]}", ["challenge:2.5", "challenge:20", "promote", "bake"]),
    ],
)
def test_omitted_sections_are_skipped(text: str, steps: list[str]) -> None:
    assert Plan.from_yaml(text).steps() == steps


def test_sections_take_their_defaults() -> None:
    plan = Plan.from_yaml("warmup: true\nchallenge: {}\napprove: false")
    assert plan.warmup == WarmupPlan()
    assert plan.challenge == ChallengePlan()
    assert plan.bake == BakePlan()
    assert plan.validation is None


def test_split_step() -> None:
    assert split_step("challenge:12.5") == ("challenge", 12.5)
    assert split_step("warmup") == ("warmup", None)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("challenge: {steps: [10, 100]}", "plan.challenge.steps[1]: must be between 0 and 100"),
        ("challenge: {steps: [0]}", "plan.challenge.steps[0]: must be between 0 and 100"),
        ("challenge: {steps: [50, 20]}", "plan.challenge.steps: must increase strictly"),
        ("challenge: {steps: [10, 10]}", "plan.challenge.steps: must increase strictly"),
        ("challenge: {steps: []}", "plan.challenge.steps: must list at least one share"),
        ("challenge: {steps: [10.005]}", "plan.challenge.steps[0]: traffic shares go in steps"),
        ("challenge: {alpha: 0.5}", "plan.challenge.alpha: must be between 0 and 0.5"),
        ("challenge: {alpha: 0}", "plan.challenge.alpha: must be between 0 and 0.5"),
        ("challenge: {metric: auc}", "plan.challenge.metric: must be 'accuracy' or 'error_rate'"),
        ("challenge: {margin: 2}", "plan.challenge.margin: must be between -1 and 1"),
        ("challenge: {min_samples: 0}", "plan.challenge.min_samples: must be at least 1"),
        ("challenge: {step_timeout_s: 0}", "plan.challenge.step_timeout_s: must be greater than 0"),
        ("warmup: {max_error_rate: 1.5}", "plan.warmup.max_error_rate: must be a share between 0"),
        ("warmup: {min_agreement: -0.1}", "plan.warmup.min_agreement: must be a share between 0"),
        ("warmup: {timeout_s: -5}", "plan.warmup.timeout_s: must be greater than 0"),
        ("warmup: {timeout_s: .inf}", "plan.warmup.timeout_s: must be a finite number"),
        ("warmup: {min_requests: 2.5}", "plan.warmup.min_requests: must be a valid integer"),
        ("warmup: {max_latency_ratio: 0}", "plan.warmup.max_latency_ratio: must be greater than 0"),
        ("warmup: {share: 0}", "plan.warmup.share: must be more than 0 and at most 100"),
        ("warmup: 3", "plan.warmup: must be a mapping of settings"),
        ("bake: {duration_s: 0}", "plan.bake.duration_s: must be greater than 0"),
        ("bake: {max_fallback_rate: 2}", "plan.bake.max_fallback_rate: must be a share between 0"),
        ("bake: {check_interval_s: -1}", "plan.bake.check_interval_s: must be greater than 0"),
        ("bake: null", "plan.bake: cannot be skipped"),
        ("bake: false", "plan.bake: cannot be skipped"),
        ("approve: maybe", "plan.approve: must be a mapping of settings, true"),
        ("approve: {separate: maybe}", "plan.approve.separate: must be a valid boolean"),
        ("validate: {min_rows: 0}", "plan.validate.min_rows: must be at least 1"),
        ("validate: {max_latency_ms: 0}", "plan.validate.max_latency_ms: must be greater than 0"),
        ("validate: {min_metrics: {acc: 0.8}}", "plan.validate.min_metrics: unknown metric 'acc'"),
        (
            "validate: {min_metrics: {rmse: 1}}",
            "plan.validate.min_metrics: lower is better for rmse",
        ),
        ("validate: {max_metrics: {accuracy: 1}}", "plan.validate.max_metrics: higher is better"),
        ("validate: {max_regression: {f1: -0.1}}", "plan.validate.max_regression: must be 0 or"),
        ("validate: {min_metrics: {accuracy: x}}", "plan.validate.min_metrics.accuracy: must be"),
    ],
)
def test_invalid_plans_name_the_field(text: str, message: str) -> None:
    with pytest.raises(BadRequest, match=re.escape(message)):
        Plan.from_yaml(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("colour: blue", "plan.colour: unknown key (known: validate, warmup, challenge, approve"),
        ("warmup: {min_request: 5}", "plan.warmup.min_request: unknown key (known: share"),
        ("bake: {duration: 5}", "plan.bake.duration: unknown key (known: duration_s"),
        ("challenge: {step: [5]}", "plan.challenge.step: unknown key (known: steps"),
        ("validate: {dataset: x}", "plan.validate.dataset: unknown key (known: holdout"),
    ],
)
def test_unknown_keys_are_refused(text: str, message: str) -> None:
    with pytest.raises(BadRequest, match=re.escape(message)):
        Plan.from_yaml(text)


def test_every_problem_is_reported_at_once() -> None:
    text = "bake: {duration_s: -1, max_error_rate: 2}\nchallenge: {alpha: 0.7}"
    with pytest.raises(BadRequest) as caught:
        Plan.from_yaml(text)
    message = caught.value.message
    assert message.startswith("invalid plan: ")
    for field in ("plan.bake.duration_s", "plan.bake.max_error_rate", "plan.challenge.alpha"):
        assert field in message


def test_long_error_lists_are_cut() -> None:
    text = "bake: {duration_s: -1, max_error_rate: 2, max_fallback_rate: 2, check_interval_s: 0}\n"
    text += "warmup: {timeout_s: 0, max_error_rate: 3, min_requests: 0}"
    with pytest.raises(BadRequest, match=r"and 2 more$"):
        Plan.from_yaml(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the plan is empty"),
        ("# nothing\n", "the plan is empty"),
        ("- warmup\n- bake\n", "a plan must be a mapping of sections"),
        ("warmup: [", "the plan is not valid YAML: line 1, column"),
        ("just words", "a plan must be a mapping of sections"),
    ],
)
def test_unreadable_plans(text: str, message: str) -> None:
    with pytest.raises(BadRequest, match=re.escape(message)):
        Plan.from_yaml(text)


def test_from_dict_refuses_other_types() -> None:
    with pytest.raises(BadRequest, match="not list"):
        Plan.from_dict([1, 2])


def test_plan_error_translates_a_validation_error() -> None:
    with pytest.raises(ValidationError) as caught:
        ChallengePlan.model_validate({"steps": [10, 150]})
    error = plan_error(caught.value)
    assert isinstance(error, BadRequest)
    assert error.message.startswith("invalid plan: plan.steps[1]: must be between 0 and 100")


def test_plans_are_immutable() -> None:
    with pytest.raises(ValidationError, match="frozen"):
        DEFAULT_PLAN.bake.duration_s = 1  # type: ignore[misc]


def test_python_names_and_yaml_names_both_build_a_plan() -> None:
    by_name = Plan(validation=ValidatePlan(min_rows=5))
    by_alias = Plan.from_dict({"validate": {"min_rows": 5}})
    assert by_name == by_alias
    assert by_alias.steps() == ["validate", "promote", "bake"]
