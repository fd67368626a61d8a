"""Data and prediction drift: how far live values have moved from the training baseline.

Each feature (and the model's predictions) is compared to the statistics the registry kept
at registration (`turnout.registry.baseline.feature_stats`), two ways:

- PSI, the population stability index, sum((a - e) * ln(a / e)) over buckets, where e and
  a are the baseline and live shares of each bucket. Numeric buckets are the baseline's
  decile bins with the outer edges opened to -inf and +inf; categorical buckets are the
  baseline's categories plus one "other" bucket, where unseen values also go. Shares are
  floored at 1e-4 (EPSILON) so an empty bucket weighs ln(share / 1e-4) instead of infinity.
- A test of "same distribution". Numeric: Kolmogorov-Smirnov of the live values against
  the baseline's CDF (101 quantiles, interpolated linearly). Its p-value treats the baseline
  as the sample it is, using the two-sample effective size n * m / (n + m) as
  `scipy.stats.ks_2samp` does, so the training sample's own noise is not read as drift.
  KS assumes a continuous distribution; a baseline with point masses (repeated quantiles,
  such as integer codes or a spike at zero) would make it flag identical data, so such
  features get the chi-square test on the baseline bins instead. Categorical: chi-square
  test of the 2 x k table of baseline and live counts per bucket.

The level needs both: with small samples PSI is biased upwards (about (buckets - 1) / n),
so PSI alone would flag noise, and the test guards against that; with large samples the
test gives tiny p-values to trivial shifts, and PSI guards against that. Below 30 live
values the level is "insufficient". "major" (PSI >= 0.2) counts as drifted, "moderate"
(PSI >= 0.1) is reported only; both also need p < 0.01 when a test could be run. Across
the features of one model the 0.01 is split between them (Bonferroni: 0.01 / k for k
features), so a 30-feature model does not see a chance "drift" in one feature every few
checks.
Missing values (None, NaN, and non-numbers in a numeric feature) are left out of n and of
every statistic.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import scipy.stats

from turnout.types import JSON, Array

EPSILON = 1e-4
MIN_ROWS = 30
PSI_MODERATE = 0.1
PSI_MAJOR = 0.2
P_VALUE = 0.01


# -- public -------------------------------------------------------------------------------


def feature_drift(stats: dict[str, JSON], values: Sequence[JSON] | Array) -> dict[str, JSON]:
    """Drift of live `values` from one feature's baseline `stats`:
    ``{"n", "psi", "test", "statistic", "p_value", "level", "drifted"}``."""
    if stats.get("kind") == "categorical":
        return _categorical_drift(stats, values)
    return _numeric_drift(stats, values)


def data_drift(
    training: dict[str, JSON] | None,
    columns: Sequence[str],
    rows: Sequence[Sequence[JSON]] | Array,
) -> dict[str, dict[str, JSON]]:
    """Drift of each feature that has baseline statistics, from live input `rows` (lists or
    a 2-D array) whose values follow `columns`."""
    baselines = (training or {}).get("features") or {}
    wanted = [(j, name) for j, name in enumerate(columns) if name in baselines]
    if not wanted:
        return {}
    table = _columns(rows, len(columns))
    alpha = P_VALUE / len(wanted)
    return {name: _relevel(feature_drift(baselines[name], table(j)), alpha) for j, name in wanted}


def prediction_drift(
    training: dict[str, JSON] | None, predictions: Sequence[JSON]
) -> dict[str, JSON] | None:
    """Drift of live predictions from the model's predictions on its training rows; None
    when the version has no prediction baseline."""
    baseline = (training or {}).get("prediction_stats")
    return None if baseline is None else feature_drift(baseline, predictions)


# -- numeric ------------------------------------------------------------------------------


def _numeric_drift(stats: dict[str, JSON], values: Sequence[JSON] | Array) -> dict[str, JSON]:
    live = _floats(values)
    live = live[~np.isnan(live)]
    expected = np.asarray(stats.get("bin_counts") or [], dtype=np.float64)
    edges = np.asarray(stats.get("bin_edges") or [], dtype=np.float64)
    cdf = stats.get("cdf")
    if live.size == 0 or expected.sum() == 0:
        return _result(int(live.size), None, "ks", None)
    expected, observed = _binned(edges, expected, live)
    psi = _psi(expected, observed)
    if cdf is None:
        return _result(live.size, psi, "ks", None)
    points = np.asarray(cdf, dtype=np.float64)
    if np.unique(points).size < points.size:
        return _result(live.size, psi, "chi2", _chi2(expected, observed))
    baseline_n = int(stats.get("count", 0)) - int(stats.get("missing", 0))
    return _result(live.size, psi, "ks", _ks(live, points, baseline_n))


def _floats(values: Sequence[JSON] | Array) -> Array:
    """Values as float64, with anything that is not a number as NaN."""
    try:
        floats = np.asarray(values, dtype=np.float64)
        if floats.ndim == 1:
            return floats
    except (TypeError, ValueError):
        pass
    series = pd.Series(np.asarray(values, dtype=object).reshape(-1), dtype=object)
    return pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def _binned(edges: Array, expected: Array, live: Array) -> tuple[Array, Array]:
    """Baseline and live counts per bucket. Buckets follow `numpy.histogram` (each closed
    on the left, the last also on the right) with the outer edges opened; a baseline with
    a single value has three buckets: below it, at it, above it."""
    if edges.size == 1:
        value = edges[0]
        around = [(live < value).sum(), (live == value).sum(), (live > value).sum()]
        return np.array([0.0, expected.sum(), 0.0]), np.array(around, dtype=np.float64)
    inner = edges[1:-1]
    buckets = np.searchsorted(inner, live, side="right")
    observed = np.bincount(buckets, minlength=expected.size).astype(np.float64)
    return expected, observed


def _ks(live: Array, points: Array, baseline_n: int) -> tuple[float, float]:
    """KS statistic against the baseline CDF, with the two-sample asymptotic p-value."""
    probabilities = np.linspace(0.0, 1.0, points.size)

    def cdf(x: Array) -> Array:
        return np.interp(x, points, probabilities)

    statistic = float(scipy.stats.kstest(live, cdf, method="asymp").statistic)
    m = max(baseline_n, 1)
    effective = max(round(live.size * m / (live.size + m)), 1)
    return statistic, float(scipy.stats.kstwo.sf(statistic, effective))


# -- categorical --------------------------------------------------------------------------


def _categorical_drift(stats: dict[str, JSON], values: Sequence[JSON] | Array) -> dict[str, JSON]:
    frequencies: dict[str, int] = stats.get("frequencies") or {}
    categories = list(frequencies)
    expected = np.array([*frequencies.values(), stats.get("other", 0)], dtype=np.float64)
    counts = _category_counts(values, categories)
    observed = np.array([counts.get(c, 0) for c in categories], dtype=np.float64)
    observed = np.append(observed, sum(counts.values()) - observed.sum())
    n = int(observed.sum())
    if n == 0 or expected.sum() == 0:
        return _result(n, None, "chi2", None)
    return _result(n, _psi(expected, observed), "chi2", _chi2(expected, observed))


def _category_counts(values: Sequence[JSON] | Array, categories: list[str]) -> dict[str, int]:
    """Live counts keyed as the baseline keys its categories (pandas' string form), with
    numbers matched across int and float spellings ("1" and "1.0")."""
    series = pd.Series(np.asarray(values, dtype=object).reshape(-1), dtype=object)
    distinct = series.value_counts(dropna=True)
    if distinct.empty:
        return {}
    keys = pd.Series(distinct.index, dtype=object).astype("string")
    known = set(categories)
    numbers = {_number(c): c for c in categories if _number(c) is not None}
    counts: dict[str, int] = {}
    for key, count in zip(keys, distinct.to_numpy(), strict=True):
        if key not in known:
            key = numbers.get(_number(key), key)
        counts[key] = counts.get(key, 0) + int(count)
    return counts


def _number(text: str) -> float | None:
    """The number `text` spells in Python's own notation, else None."""
    try:
        value = float(text)
    except ValueError:
        return None
    spellings = {str(value)} | ({str(int(value))} if value.is_integer() else set())
    return value if text in spellings else None


# -- shared -------------------------------------------------------------------------------


def _psi(expected: Array, observed: Array) -> float:
    e = np.maximum(expected / expected.sum(), EPSILON)
    a = np.maximum(observed / observed.sum(), EPSILON)
    return float(np.sum((a - e) * np.log(a / e)))


def _chi2(expected: Array, observed: Array) -> tuple[float, float] | None:
    """Chi-square test of homogeneity of the baseline and live counts; None when fewer than
    two buckets hold any value."""
    table = np.vstack([expected, observed])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return None
    result = scipy.stats.chi2_contingency(table)
    return float(result.statistic), float(result.pvalue)


def _result(
    n: int, psi: float | None, test: str, outcome: tuple[float, float] | None
) -> dict[str, JSON]:
    statistic, p_value = outcome if outcome is not None else (None, None)
    level = _level(n, psi, p_value)
    return {
        "n": int(n),
        "psi": psi,
        "test": test,
        "statistic": statistic,
        "p_value": p_value,
        "level": level,
        "drifted": level == "major",
    }


def _relevel(result: dict[str, JSON], alpha: float) -> dict[str, JSON]:
    """The result judged at significance level `alpha` instead of P_VALUE."""
    psi, p_value = result["psi"], result["p_value"]
    assert psi is None or isinstance(psi, float)
    assert p_value is None or isinstance(p_value, float)
    level = _level(int(result["n"]), psi, p_value, alpha)
    return {**result, "level": level, "drifted": level == "major"}


def _level(n: int, psi: float | None, p_value: float | None, alpha: float = P_VALUE) -> str:
    if n < MIN_ROWS or psi is None:
        return "insufficient"
    significant = p_value is None or p_value < alpha
    if significant and psi >= PSI_MAJOR:
        return "major"
    if significant and psi >= PSI_MODERATE:
        return "moderate"
    return "none"


def _columns(rows: Sequence[Sequence[JSON]] | Array, width: int) -> Callable[[int], Any]:
    """Column j of `rows` on demand, from one 2-D array when the rows are rectangular."""
    if len(rows) == 0:
        return lambda j: np.empty(0, dtype=object)
    table: Array | None = None
    try:
        table = rows if isinstance(rows, np.ndarray) else np.array(rows, dtype=object)
    except ValueError:
        table = None
    if table is not None and table.ndim == 2 and table.shape[1] == width:
        return lambda j: table[:, j]
    return lambda j: [row[j] for row in rows]
