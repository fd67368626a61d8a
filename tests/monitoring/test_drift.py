"""Drift of live inputs and predictions from the baseline kept at registration."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from turnout.monitoring.drift import data_drift, feature_drift, prediction_drift
from turnout.registry.baseline import baseline, feature_stats

NUMERIC = ["age", "income", "score"]
COLUMNS = [*NUMERIC, "children", "plan"]
PLANS = ["basic", "plus", "pro", "family"]
PLAN_SHARES = [0.4, 0.3, 0.2, 0.1]
KEYS = {"n", "psi", "test", "statistic", "p_value", "level", "drifted"}


def population(n: int, *, seed: int) -> pd.DataFrame:
    """Customers: three continuous features, a small count and a plan category."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "age": rng.normal(40.0, 12.0, n),
            "income": rng.lognormal(10.0, 0.5, n),
            "score": rng.uniform(0.0, 1.0, n),
            "children": rng.poisson(1.2, n),
            "plan": rng.choice(PLANS, n, p=PLAN_SHARES),
        }
    )


def rows_of(frame: pd.DataFrame) -> list[list[Any]]:
    """Live rows as the prediction log holds them: plain Python values."""
    return frame[COLUMNS].astype(object).to_numpy().tolist()


@pytest.fixture(scope="module")
def training() -> dict[str, Any]:
    return baseline(population(20_000, seed=1), COLUMNS, None)


def assert_shape(result: dict[str, Any]) -> None:
    assert set(result) == KEYS
    assert result["level"] in {"none", "moderate", "major", "insufficient"}
    assert result["drifted"] is (result["level"] == "major")


def test_same_distribution_does_not_drift(training: dict[str, Any]) -> None:
    result = data_drift(training, COLUMNS, rows_of(population(10_000, seed=2)))
    assert list(result) == COLUMNS
    for name, drift in result.items():
        assert_shape(drift)
        assert drift["n"] == 10_000
        assert drift["psi"] < 0.05, name
        assert drift["p_value"] > 0.01, name
        assert drift["level"] == "none", name
        assert not drift["drifted"]


def test_shift_of_one_std_is_major_drift_of_that_feature_only(training: dict[str, Any]) -> None:
    live = population(5_000, seed=3)
    live["age"] += 12.0
    result = data_drift(training, COLUMNS, rows_of(live))
    assert result["age"]["level"] == "major"
    assert result["age"]["drifted"] is True
    assert result["age"]["test"] == "ks"
    assert result["age"]["p_value"] < 1e-10
    assert result["age"]["psi"] > 0.5
    for name in COLUMNS[1:]:
        assert result[name]["level"] == "none", name


def test_numeric_psi_and_ks_follow_their_definitions(training: dict[str, Any]) -> None:
    stats_ = training["features"]["income"]
    live = population(3_000, seed=4)["income"].to_numpy() * 1.1
    result = feature_drift(stats_, live)

    edges = np.array(stats_["bin_edges"])
    opened = np.concatenate([[-np.inf], edges[1:-1], [np.inf]])
    observed = np.histogram(live, bins=opened)[0] / live.size
    expected = np.array(stats_["bin_counts"]) / sum(stats_["bin_counts"])
    a, e = np.maximum(observed, 1e-4), np.maximum(expected, 1e-4)
    assert result["psi"] == pytest.approx(np.sum((a - e) * np.log(a / e)), rel=1e-12)

    quantiles = np.array(stats_["cdf"])
    ks = stats.kstest(live, lambda x: np.interp(x, quantiles, np.linspace(0, 1, 101)))
    assert result["statistic"] == pytest.approx(ks.statistic, rel=1e-12)
    # the baseline is a sample too: the two-sample effective size sets the p-value
    effective = round(3_000 * 20_000 / 23_000)
    assert result["p_value"] == pytest.approx(stats.kstwo.sf(ks.statistic, effective), rel=1e-9)


def test_ks_p_values_are_calibrated_when_nothing_changed() -> None:
    """Same population for baseline and live: p < 0.05 about 5 times in 100."""
    rng = np.random.default_rng(5)
    p_values = []
    for _ in range(100):
        stats_ = feature_stats(pd.Series(rng.normal(size=5_000)))
        p_values.append(feature_drift(stats_, rng.normal(size=20_000))["p_value"])
    assert sum(p < 0.05 for p in p_values) <= 12


def test_integer_counts_use_chi2_and_do_not_drift_when_unchanged(
    training: dict[str, Any],
) -> None:
    """A count has point masses, which KS would read as drift in identical data."""
    children = training["features"]["children"]
    assert len(set(children["cdf"])) < 101
    same = feature_drift(children, population(50_000, seed=6)["children"].to_numpy())
    assert same["test"] == "chi2"
    assert same["p_value"] > 0.01
    assert same["level"] == "none"
    more = feature_drift(children, np.random.default_rng(7).poisson(2.0, 2_000))
    assert more["level"] == "major"


def test_categorical_frequency_change_is_flagged_by_chi2(training: dict[str, Any]) -> None:
    rng = np.random.default_rng(8)
    plan = training["features"]["plan"]
    same = feature_drift(plan, rng.choice(PLANS, 4_000, p=PLAN_SHARES).tolist())
    assert same["test"] == "chi2"
    assert same["level"] == "none"
    moved = feature_drift(plan, rng.choice(PLANS, 4_000, p=[0.1, 0.2, 0.3, 0.4]).tolist())
    assert moved["test"] == "chi2"
    assert moved["p_value"] < 1e-10
    assert moved["level"] == "major"
    assert moved["drifted"] is True


def test_chi2_statistic_is_scipy_contingency_test(training: dict[str, Any]) -> None:
    plan = training["features"]["plan"]
    live = ["basic"] * 300 + ["plus"] * 300 + ["pro"] * 250 + ["family"] * 150
    result = feature_drift(plan, live)
    expected = [plan["frequencies"][p] for p in plan["frequencies"]]
    observed = [live.count(p) for p in plan["frequencies"]]
    table = np.array([expected, observed])
    reference = stats.chi2_contingency(table)
    assert result["statistic"] == pytest.approx(reference.statistic, rel=1e-12)
    assert result["p_value"] == pytest.approx(reference.pvalue, rel=1e-9)


def test_unseen_categories_go_to_other(training: dict[str, Any]) -> None:
    plan = training["features"]["plan"]
    rng = np.random.default_rng(9)
    live = rng.choice([*PLANS, "enterprise"], 2_000, p=[0.3, 0.2, 0.15, 0.05, 0.3]).tolist()
    result = feature_drift(plan, live)
    assert result["n"] == 2_000
    assert result["level"] == "major"
    assert math.isfinite(result["psi"])
    a_few = feature_drift(plan, [*rng.choice(PLANS, 5_000, p=PLAN_SHARES).tolist(), "new"])
    assert a_few["level"] == "none"


def test_small_samples_are_insufficient(training: dict[str, Any]) -> None:
    live = population(29, seed=10)
    live["age"] += 30.0
    result = data_drift(training, COLUMNS, rows_of(live))
    for name in COLUMNS:
        assert result[name]["n"] == 29
        assert result[name]["level"] == "insufficient", name
        assert result[name]["drifted"] is False
    assert result["age"]["psi"] > 1.0


def test_small_sample_psi_noise_is_held_back_by_the_test(training: dict[str, Any]) -> None:
    """40 unchanged values: PSI is noisy (about 9 / 40 for ten bins); the test keeps the
    level from reading noise as drift."""
    levels = [
        data_drift(training, COLUMNS, rows_of(population(40, seed=seed)))["score"]
        for seed in range(100, 130)
    ]
    assert max(d["psi"] for d in levels) >= 0.1
    assert sum(d["level"] != "none" for d in levels) <= 2


def test_missing_values_are_left_out(training: dict[str, Any]) -> None:
    live = population(400, seed=11).astype(object)
    live.loc[:99, "age"] = None
    live.loc[100:149, "age"] = math.nan
    live.loc[150:159, "age"] = "not a number"
    live.loc[:49, "plan"] = None
    live.loc[50:59, "plan"] = math.nan
    result = data_drift(training, COLUMNS, rows_of(live))
    assert result["age"]["n"] == 240
    assert result["plan"]["n"] == 340
    assert result["income"]["n"] == 400
    assert result["age"]["level"] == "none"
    assert result["plan"]["level"] == "none"


def test_nothing_present_is_insufficient(training: dict[str, Any]) -> None:
    for name in ("age", "plan"):
        result = feature_drift(training["features"][name], [None, math.nan])
        assert_shape(result)
        assert result["n"] == 0
        assert result["psi"] is None
        assert result["level"] == "insufficient"


def test_numeric_arrays_and_rows_in_any_column_order(training: dict[str, Any]) -> None:
    live = population(1_000, seed=12)
    live["score"] = live["score"] ** 3
    order = ["score", "plan", "unknown", "age"]
    rows = live.assign(unknown=0.0)[order].astype(object).to_numpy().tolist()
    result = data_drift(training, order, rows)
    assert list(result) == ["score", "plan", "age"]
    assert result["score"]["drifted"] is True
    assert result["age"]["level"] == "none"
    as_array = data_drift(training, NUMERIC, live[NUMERIC].to_numpy())
    assert as_array["score"] == result["score"]


def test_without_a_baseline_there_is_nothing_to_compare() -> None:
    assert data_drift(None, COLUMNS, [[1.0, 2.0, 3.0, 1, "basic"]]) == {}
    assert data_drift({"rows": 10}, COLUMNS, [[1.0, 2.0, 3.0, 1, "basic"]]) == {}
    assert prediction_drift(None, [0, 1]) is None
    assert prediction_drift({"features": {}}, [0, 1]) is None


def test_baselines_without_a_cdf_still_give_psi(training: dict[str, Any]) -> None:
    old = {k: v for k, v in training["features"]["age"].items() if k != "cdf"}
    live = population(2_000, seed=13)["age"].to_numpy() + 12.0
    result = feature_drift(old, live)
    assert result["test"] == "ks"
    assert result["statistic"] is None
    assert result["p_value"] is None
    assert result["psi"] > 0.5
    assert result["level"] == "major"


def test_constant_baseline() -> None:
    constant = feature_stats(pd.Series([3.0] * 500))
    assert feature_drift(constant, [3.0] * 100)["level"] == "none"
    assert feature_drift(constant, [3.0] * 50 + [4.0] * 50)["level"] == "major"


def test_prediction_drift_on_labels() -> None:
    rng = np.random.default_rng(14)
    training = {
        "prediction_stats": feature_stats(
            pd.Series(rng.choice([0, 1, 2], 10_000, p=[0.6, 0.3, 0.1])), categorical=True
        )
    }
    assert training["prediction_stats"]["frequencies"].keys() == {"0", "1", "2"}
    same = prediction_drift(training, rng.choice([0, 1, 2], 3_000, p=[0.6, 0.3, 0.1]).tolist())
    assert same is not None
    assert_shape(same)
    assert same["test"] == "chi2"
    assert same["level"] == "none"
    moved = prediction_drift(training, rng.choice([0, 1, 2], 3_000, p=[0.2, 0.3, 0.5]).tolist())
    assert moved is not None
    assert moved["level"] == "major"
    assert moved["drifted"] is True
    # labels that arrive as floats are the same classes
    floats = prediction_drift(training, [float(v) for v in rng.choice([0, 1, 2], 3_000)])
    assert floats is not None
    assert floats["psi"] < 1.0


def test_prediction_drift_on_numeric_outputs() -> None:
    rng = np.random.default_rng(15)
    training = {"prediction_stats": feature_stats(pd.Series(rng.gamma(2.0, 3.0, 10_000)))}
    same = prediction_drift(training, rng.gamma(2.0, 3.0, 2_000).tolist())
    moved = prediction_drift(training, (rng.gamma(2.0, 3.0, 2_000) * 1.5).tolist())
    assert same is not None
    assert moved is not None
    assert same["level"] == "none"
    assert moved["level"] == "major"


def test_string_and_bool_categories_match_the_baseline_keys() -> None:
    stats_ = feature_stats(pd.Series([True, False] * 500))
    assert feature_drift(stats_, [True, False] * 100)["psi"] == pytest.approx(0.0, abs=1e-12)
    assert feature_drift(stats_, [True] * 200)["level"] == "major"
