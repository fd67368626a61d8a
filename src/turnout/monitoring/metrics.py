"""Model quality from predictions joined to their actuals: metric values with 95% intervals.

Every value is scikit-learn's, computed on all rows. Each metric is reported as
``{"value", "ci_low", "ci_high"}``; its interval comes from:

- accuracy, and binary precision and recall: the Wilson score interval of a binomial
  proportion (accuracy over all rows, precision over predicted positives, recall over
  actual positives);
- log loss and MAE: the Student t interval of the mean of the per-row values;
- RMSE: the t interval of the mean squared error, square-rooted (lower end clipped at 0);
- F1, ROC AUC, R² and macro-averaged precision and recall: a percentile bootstrap
  (200 resamples, seed 0, so the same rows always give the same interval). Rows are
  resampled whole (prediction and actual together); for ROC AUC each actual class is
  resampled on its own, so every resample holds every class, and each resample's AUC is
  computed as Mann-Whitney U / (n_pos * n_neg), which equals scikit-learn's. Past 5,000
  rows the bootstrap runs on a seeded 5,000-row subsample and its deviations from the
  subsample's own value are scaled by sqrt(5000 / n) (m-out-of-n bootstrap), so the
  interval still reflects all n rows while the cost stays flat.

An interval always includes its value and stays within the metric's range. A metric is
None when its value or its interval is undefined: no rows; precision without predicted
positives; recall without actual positives; ROC AUC unless every class has two actuals
(and probabilities for every row); log loss without probabilities or with actuals outside
the model's classes; R² with constant actuals; t and bootstrap intervals below two rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
import pandas as pd
from scipy import stats
from sklearn import metrics

from turnout.types import JSON, Array

Metric: TypeAlias = dict[str, float] | None
Statistic: TypeAlias = Callable[..., Any]

CONFIDENCE = 0.95
N_RESAMPLES = 200
BOOTSTRAP_ROWS = 5_000
SEED = 0
CLASSIFICATION_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss")
REGRESSION_METRICS = ("mae", "rmse", "r2")


# -- public -------------------------------------------------------------------------------


def classification_metrics(
    actual: Sequence[JSON] | Array,
    predicted: Sequence[JSON] | Array,
    probabilities: Array | None,
    classes: Sequence[JSON],
) -> dict[str, JSON]:
    """Accuracy, precision, recall, F1, ROC AUC and log loss of predicted labels.

    `classes` are the model's labels in probability-column order. With two classes,
    precision, recall and F1 are those of the positive label ``classes[1]`` and ROC AUC
    scores its probability column; otherwise they are macro averages and ROC AUC is
    one-vs-rest. `probabilities` is an n x len(classes) array, or None.
    """
    _check_lengths(actual, predicted)
    result: dict[str, JSON] = {"task": "classification", "n": len(actual)}
    result.update(dict.fromkeys(CLASSIFICATION_METRICS))
    if len(actual) == 0:
        return result
    labels = _Labels.encode(actual, predicted, classes)
    result["accuracy"] = _accuracy(labels)
    result.update(_binary_rates(labels) if labels.k == 2 else _macro_rates(labels))
    probs = _probabilities(probabilities, labels)
    if probs is not None:
        result["roc_auc"] = _roc_auc(labels, probs)
        result["log_loss"] = _log_loss(labels, probs)
    return result


def regression_metrics(
    actual: Sequence[float] | Array, predicted: Sequence[float] | Array
) -> dict[str, JSON]:
    """MAE, RMSE and R² of numeric predictions; pairs that are not finite numbers are left
    out (and not counted in ``n``)."""
    _check_lengths(actual, predicted)
    true = np.asarray(actual, dtype=np.float64).reshape(-1)
    pred = np.asarray(predicted, dtype=np.float64).reshape(-1)
    finite = np.isfinite(true) & np.isfinite(pred)
    if not finite.all():
        true, pred = true[finite], pred[finite]
    result: dict[str, JSON] = {"task": "regression", "n": int(true.size)}
    result.update(dict.fromkeys(REGRESSION_METRICS))
    if true.size == 0:
        return result
    errors = pred - true
    mae = metrics.mean_absolute_error(true, pred)
    result["mae"] = _t_metric(mae, np.abs(errors), lower=0.0)
    result["rmse"] = _rmse(metrics.root_mean_squared_error(true, pred), errors**2)
    result["r2"] = _r2(true, pred)
    return result


# -- labels -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Labels:
    """Actual and predicted labels as integer codes: the index of each label in the model's
    classes, and codes from k upwards for labels the model does not know."""

    true: Array
    pred: Array
    k: int

    @classmethod
    def encode(
        cls,
        actual: Sequence[JSON] | Array,
        predicted: Sequence[JSON] | Array,
        classes: Sequence[JSON],
    ) -> _Labels:
        index = pd.Index(list(classes), dtype=object)
        true = index.get_indexer(np.asarray(actual, dtype=object).reshape(-1))
        pred = index.get_indexer(np.asarray(predicted, dtype=object).reshape(-1))
        if (true < 0).any() or (pred < 0).any():
            true, pred = _code_unknown(actual, predicted, true, pred, len(index))
        return cls(true.astype(np.int64), pred.astype(np.int64), len(index))

    @property
    def n(self) -> int:
        return int(self.true.size)

    @property
    def known(self) -> bool:
        """Whether every actual label is one of the model's classes."""
        return bool(self.true.max() < self.k)

    def class_rows(self) -> list[Array]:
        """Row indices of each class among the actuals, in class order."""
        order = np.argsort(self.true, kind="stable")
        bounds = np.searchsorted(self.true[order], np.arange(1, self.k))
        return list(np.split(order, bounds))


def _code_unknown(
    actual: Sequence[JSON] | Array,
    predicted: Sequence[JSON] | Array,
    true: Array,
    pred: Array,
    k: int,
) -> tuple[Array, Array]:
    values = np.concatenate(
        [np.asarray(actual, dtype=object)[true < 0], np.asarray(predicted, dtype=object)[pred < 0]]
    )
    codes, _ = pd.factorize(pd.Series(values, dtype=object).astype(str))
    split = int((true < 0).sum())
    true, pred = true.copy(), pred.copy()
    true[true < 0] = codes[:split] + k
    pred[pred < 0] = codes[split:] + k
    return true, pred


def _check_lengths(actual: Sequence[JSON] | Array, predicted: Sequence[JSON] | Array) -> None:
    if len(actual) != len(predicted):
        raise ValueError(f"{len(actual)} actuals but {len(predicted)} predictions")


def _probabilities(probabilities: Array | None, labels: _Labels) -> Array | None:
    """Probabilities usable for ROC AUC and log loss, rows rescaled to sum to one; None
    when missing, malformed, or when some actual is not one of the model's classes."""
    if probabilities is None or labels.k < 2 or not labels.known:
        return None
    probs = np.asarray(probabilities, dtype=np.float64)
    if probs.shape != (labels.n, labels.k) or not np.isfinite(probs).all() or probs.min() < 0:
        return None
    totals = probs.sum(axis=1, keepdims=True)
    if (totals <= 0).any():
        return None
    normalized: Array = probs / totals
    return normalized


# -- classification metrics ---------------------------------------------------------------


def _accuracy(labels: _Labels) -> Metric:
    value = metrics.accuracy_score(labels.true, labels.pred)
    correct = int((labels.true == labels.pred).sum())
    return _metric(value, *_wilson(correct, labels.n), lower=0.0, upper=1.0)


def _binary_rates(labels: _Labels) -> dict[str, Metric]:
    """Precision and recall with Wilson intervals and F1 with a bootstrap, for classes[1]."""
    true_pos, pred_pos = labels.true == 1, labels.pred == 1
    hits = int((true_pos & pred_pos).sum())
    n_pred, n_true = int(pred_pos.sum()), int(true_pos.sum())
    precision, recall, f1 = _positive_rates(labels.true, labels.pred)
    result: dict[str, Metric] = {"precision": None, "recall": None, "f1": None}
    if n_pred:
        result["precision"] = _metric(precision, *_wilson(hits, n_pred), lower=0.0, upper=1.0)
    if n_true:
        result["recall"] = _metric(recall, *_wilson(hits, n_true), lower=0.0, upper=1.0)
    if n_pred or n_true:

        def statistic(rows: Array) -> float:
            return _positive_rates(labels.true[rows], labels.pred[rows])[2]

        result["f1"] = _bootstrap_metric(
            np.array([f1]), statistic, [np.arange(labels.n)], lower=0.0, upper=1.0
        )[0]
    return result


def _positive_rates(true: Array, pred: Array) -> tuple[float, float, float]:
    precision, recall, f1, _ = metrics.precision_recall_fscore_support(
        true, pred, labels=[1], average=None, zero_division=0
    )
    return float(precision[0]), float(recall[0]), float(f1[0])


def _macro_rates(labels: _Labels) -> dict[str, Metric]:
    """Macro-averaged precision, recall and F1 over the labels seen, with one bootstrap."""
    seen = np.union1d(labels.true, labels.pred)

    def statistic(rows: Array) -> Array:
        scores = metrics.precision_recall_fscore_support(
            labels.true[rows], labels.pred[rows], labels=seen, average="macro", zero_division=0
        )
        return np.array(scores[:3], dtype=np.float64)

    values = statistic(np.arange(labels.n))
    found = _bootstrap_metric(values, statistic, [np.arange(labels.n)], lower=0.0, upper=1.0)
    return dict(zip(("precision", "recall", "f1"), found, strict=True))


def _roc_auc(labels: _Labels, probs: Array) -> Metric:
    """Binary or one-vs-rest macro ROC AUC, with a bootstrap stratified by actual class."""
    strata = labels.class_rows()
    if any(len(rows) < 2 for rows in strata):
        return None
    if labels.k == 2:
        value = metrics.roc_auc_score(labels.true, probs[:, 1])
    else:
        value = metrics.roc_auc_score(
            labels.true, probs, multi_class="ovr", average="macro", labels=np.arange(labels.k)
        )
    scored = [1] if labels.k == 2 else list(range(labels.k))

    def statistic(*rows: Array, axis: int = -1) -> Array:
        """Mean over scored classes of AUC = U / (n_pos * n_neg), Mann-Whitney's U of the
        class's probability for its own rows against all other rows."""
        total = np.zeros(rows[0].shape[:-1])
        for c in scored:
            own = probs[rows[c], c]
            rest = probs[np.concatenate(rows[:c] + rows[c + 1 :], axis=-1), c]
            u = stats.mannwhitneyu(own, rest, axis=-1, method="asymptotic").statistic
            total += u / (own.shape[-1] * rest.shape[-1])
        return total / len(scored)

    return _bootstrap_metric(
        np.array([value]), statistic, strata, lower=0.0, upper=1.0, vectorized=True
    )[0]


def _log_loss(labels: _Labels, probs: Array) -> Metric:
    value = metrics.log_loss(labels.true, probs, labels=np.arange(labels.k))
    eps = np.finfo(probs.dtype).eps
    chosen = probs[np.arange(labels.n), labels.true]
    return _t_metric(value, -np.log(np.clip(chosen, eps, 1 - eps)), lower=0.0)


# -- regression metrics -------------------------------------------------------------------


def _rmse(value: float, squared_errors: Array) -> Metric:
    interval = _t_interval(squared_errors)
    if interval is None:
        return None
    low, high = interval
    return _metric(value, math.sqrt(max(low, 0.0)), math.sqrt(max(high, 0.0)), lower=0.0)


def _r2(true: Array, pred: Array) -> Metric:
    if true.size < 2 or np.ptp(true) == 0:
        return None
    value = metrics.r2_score(true, pred)

    def statistic(rows: Array, axis: int = -1) -> Array:
        batch = np.atleast_2d(rows)
        scores = metrics.r2_score(true[batch].T, pred[batch].T, multioutput="raw_values")
        return np.asarray(scores) if rows.ndim > 1 else np.asarray(scores[0])

    found = _bootstrap_metric(
        np.array([value]), statistic, [np.arange(true.size)], upper=1.0, vectorized=True
    )
    return found[0]


# -- intervals ----------------------------------------------------------------------------


def _metric(
    value: float, low: float, high: float, *, lower: float = -math.inf, upper: float = math.inf
) -> Metric:
    """The metric as reported: its interval widened to hold the value, kept in range."""
    if not all(math.isfinite(x) for x in (value, low, high)):
        return None
    low = min(max(low, lower), value)
    high = max(min(high, upper), value)
    return {"value": float(value), "ci_low": float(low), "ci_high": float(high)}


def _wilson(successes: int, trials: int) -> tuple[float, float]:
    ci = stats.binomtest(successes, trials).proportion_ci(
        confidence_level=CONFIDENCE, method="wilson"
    )
    return float(ci.low), float(ci.high)


def _t_interval(values: Array) -> tuple[float, float] | None:
    """t interval of the mean of `values`; None below two values."""
    if values.size < 2:
        return None
    mean = float(values.mean())
    sem = float(stats.sem(values))
    if sem == 0 or not math.isfinite(sem):
        return (mean, mean) if sem == 0 else None
    low, high = stats.t.interval(CONFIDENCE, values.size - 1, loc=mean, scale=sem)
    return float(low), float(high)


def _t_metric(value: float, per_row: Array, *, lower: float) -> Metric:
    interval = _t_interval(per_row)
    return None if interval is None else _metric(value, *interval, lower=lower)


def _bootstrap_metric(
    values: Array,
    statistic: Statistic,
    strata: list[Array],
    *,
    lower: float = -math.inf,
    upper: float = math.inf,
    vectorized: bool = False,
) -> list[Metric]:
    """Metrics for `values` (one per output of `statistic`) with percentile bootstrap
    intervals; `statistic` takes row indices, one array per stratum."""
    offsets = _bootstrap_offsets(statistic, strata, vectorized=vectorized)
    if offsets is None:
        return [None] * len(values)
    low, high = offsets
    return [
        _metric(float(v), float(v + lo), float(v + hi), lower=lower, upper=upper)
        for v, lo, hi in zip(values, low, high, strict=True)
    ]


def _bootstrap_offsets(
    statistic: Statistic, strata: list[Array], *, vectorized: bool
) -> tuple[Array, Array] | None:
    """Where the interval's ends lie relative to the value, scaled to all rows."""
    n = sum(len(rows) for rows in strata)
    sample = _subsample(strata, n)
    if any(len(rows) < 2 for rows in sample):
        return None
    result = stats.bootstrap(
        tuple(sample),
        statistic,
        n_resamples=N_RESAMPLES,
        confidence_level=CONFIDENCE,
        method="percentile",
        vectorized=vectorized,
        rng=np.random.default_rng(SEED),
    )
    centre = np.atleast_1d(np.asarray(statistic(*sample), dtype=np.float64))
    scale = math.sqrt(sum(len(rows) for rows in sample) / n)
    low = np.atleast_1d(result.confidence_interval.low)
    high = np.atleast_1d(result.confidence_interval.high)
    return (low - centre) * scale, (high - centre) * scale


def _subsample(strata: list[Array], n: int) -> list[Array]:
    """At most BOOTSTRAP_ROWS rows, drawn from each stratum in proportion (two at least)."""
    if n <= BOOTSTRAP_ROWS:
        return strata
    rng = np.random.default_rng(SEED)
    picked = []
    for rows in strata:
        size = min(len(rows), max(2, round(BOOTSTRAP_ROWS * len(rows) / n)))
        picked.append(np.sort(rng.choice(rows, size=size, replace=False)))
    return picked
