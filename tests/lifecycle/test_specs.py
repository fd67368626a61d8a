"""One parser for hand-written documents, one duration grammar, one set of share checks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from turnout.duration import parse_duration
from turnout.errors import BadRequest
from turnout.lifecycle.apply import parse_spec
from turnout.lifecycle.plans import Plan
from turnout.lifecycle.retrain.policy import RetrainPolicy
from turnout.lifecycle.shares import challenger_problem, shadow_problem
from turnout.monitoring.service import Window

NOW = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("parse", "prefix"),
    [
        (Plan.parse, "the plan is not valid YAML: line 1, column"),
        (parse_spec, "the spec is not valid YAML: line 1, column"),
        (RetrainPolicy.parse, "the retrain policy is not valid YAML: line 1, column"),
    ],
)
def test_broken_yaml_says_where_for_every_kind(parse: object, prefix: str) -> None:
    assert callable(parse)
    with pytest.raises(BadRequest) as caught:
        parse("a: [")
    assert caught.value.message.startswith(prefix)


def test_a_policy_names_the_keys_it_knows() -> None:
    with pytest.raises(BadRequest, match=r"policy\.triggers\.nope: unknown key \(known: "):
        RetrainPolicy.parse({"data": {"path": "/d"}, "target": "y", "triggers": {"nope": 1}})


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90.0), (90, 90.0), (1.5, 1.5), ("90s", 90.0), ("15m", 900.0), ("1.5h", 5400.0),
     ("7d", 604800.0), (" 2 H ", 7200.0)],
)  # fmt: skip
def test_durations_take_whole_and_decimal_numbers(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["soon", "1w", "-5m", "", True, None, "1.5.2h"])
def test_other_durations_are_refused_with_the_grammar(text: object) -> None:
    with pytest.raises(ValueError, match=r"must be a duration such as 90s, 15m, 1\.5h or 7d"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["0", "0s", 0, "0.0h"])
def test_an_empty_duration_is_refused(text: object) -> None:
    with pytest.raises(ValueError, match="must be longer than 0"):
        parse_duration(text)


def test_windows_and_policies_read_durations_alike() -> None:
    assert Window.parse("1.5h", now=NOW).since == NOW - timedelta(hours=1.5)
    assert Window.parse("90", now=NOW).since == NOW - timedelta(seconds=90)
    policy = RetrainPolicy.parse({"data": {"path": "/d"}, "target": "y", "cooldown": "1.5h"})
    assert policy.cooldown == 5400.0
    with pytest.raises(BadRequest) as window:
        Window.parse("soon", now=NOW)
    with pytest.raises(BadRequest) as cooldown:
        RetrainPolicy.parse({"data": {"path": "/d"}, "target": "y", "cooldown": "soon"})
    grammar = "must be a duration such as 90s, 15m, 1.5h or 7d, or a number of seconds"
    assert f"invalid window 'soon': {grammar}, not 'soon'" in window.value.message
    assert f"policy.cooldown: {grammar}, not 'soon'" in cooldown.value.message


def test_a_window_far_longer_than_the_log_reads_everything() -> None:
    assert Window.parse("999999d", now=NOW).since is not None


def test_plans_and_routing_check_shares_alike() -> None:
    assert challenger_problem(10) is None
    assert challenger_problem(100) == (
        "must be between 0 and 100, not 100 (100% is the promote step itself)"
    )
    assert shadow_problem(100) is None
    assert shadow_problem(10.005) == "traffic shares go in steps of 0.01%, not 10.005%"
    with pytest.raises(BadRequest, match=r"plan\.warmup\.share: must be more than 0 and at"):
        Plan.parse({"warmup": {"share": 0}})
