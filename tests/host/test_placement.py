"""The model host's pure decisions: eviction order, isolation, accounted memory."""

from __future__ import annotations

import pytest

from turnout.errors import ModelUnavailable
from turnout.host.placement import (
    MIN_MODEL_BYTES,
    UNMEASURED_FLOOR_BYTES,
    Isolation,
    Resident,
    accounted_bytes,
    choose_victims,
    code_bearing,
    isolation_for,
)

MB = 1 << 20


def resident(key: str, last_used: float, **kwargs: object) -> Resident:
    return Resident(key=key, runner=1, memory_bytes=MB, last_used=last_used, **kwargs)  # type: ignore[arg-type]


def test_nothing_is_evicted_while_the_model_fits() -> None:
    residents = [resident("a:1", 1.0)]
    assert choose_victims(residents, used_bytes=MB, need_bytes=MB, budget_bytes=2 * MB) == []


def test_the_least_recently_used_idle_models_go_first_and_only_as_many_as_needed() -> None:
    residents = [resident("a:1", 3.0), resident("b:1", 1.0), resident("c:1", 2.0)]
    victims = choose_victims(residents, used_bytes=3 * MB, need_bytes=2 * MB, budget_bytes=3 * MB)
    assert [v.key for v in victims] == ["b:1", "c:1"]


def test_unrouted_models_go_before_routed_ones_and_pinned_or_busy_never() -> None:
    residents = [
        resident("routed:1", 1.0),
        resident("pinned:1", 0.0, pinned=True),
        resident("busy:1", 0.0, busy=True),
        resident("unrouted:1", 9.0, routed=False),
    ]
    victims = choose_victims(residents, used_bytes=4 * MB, need_bytes=MB, budget_bytes=4 * MB)
    assert [v.key for v in victims] == ["unrouted:1"]


def test_a_budget_full_of_pinned_models_refuses_with_the_setting_to_raise() -> None:
    residents = [resident("a:1", 1.0, pinned=True)]
    with pytest.raises(ModelUnavailable, match="TURNOUT_MODEL_MEMORY_MB"):
        choose_victims(residents, used_bytes=MB, need_bytes=MB, budget_bytes=MB)


@pytest.mark.parametrize(
    ("flavor", "paths", "expected"),
    [
        ("sklearn", ["model.skops"], False),
        ("sklearn", ["model.joblib"], True),
        ("sklearn", ["model.PKL"], True),
        ("onnx", ["model.onnx"], False),
        ("xgboost", ["model.json"], False),
        ("python", ["model.py"], True),
        ("mlflow", ["MLmodel", "model.skops"], True),
    ],
)
def test_code_bearing_versions_are_recognised(
    flavor: str, paths: list[str], expected: bool
) -> None:
    assert code_bearing(flavor, paths) is expected


def test_isolation_follows_the_code_unless_overridden_and_a_culprit_always_runs_alone() -> None:
    assert isolation_for(code=True, isolated=False, override=None) is Isolation.DEDICATED
    assert isolation_for(code=False, isolated=False, override=None) is Isolation.SHARED
    assert isolation_for(code=True, isolated=False, override=Isolation.SHARED) is Isolation.SHARED
    assert (
        isolation_for(code=False, isolated=False, override=Isolation.DEDICATED)
        is Isolation.DEDICATED
    )
    assert (
        isolation_for(code=False, isolated=True, override=Isolation.SHARED) is Isolation.DEDICATED
    )


def test_unmeasured_versions_count_at_a_safe_estimate() -> None:
    assert accounted_bytes(None, 1000) == UNMEASURED_FLOOR_BYTES
    assert accounted_bytes(None, 100 * MB) == 400 * MB
    assert accounted_bytes(10, 1000) == MIN_MODEL_BYTES
    assert accounted_bytes(5 * MB, 1000) == 5 * MB
