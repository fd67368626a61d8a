"""Model quality metrics: values identical to scikit-learn's, honest 95% intervals, and no
surprises on degenerate data."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from turnout.monitoring.metrics import classification_metrics, regression_metrics

CLASSIFICATION = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss")
REGRESSION = ("mae", "rmse", "r2")
BOUNDED = {"accuracy", "precision", "recall", "f1", "roc_auc"}


@dataclass(frozen=True)
class Labelled:
    """Actuals, predicted labels and probabilities as the monitoring layer receives them."""

    actual: list[Any]
    predicted: list[Any]
    probabilities: np.ndarray
    classes: list[Any]

    def metrics(self) -> dict[str, Any]:
        return classification_metrics(self.actual, self.predicted, self.probabilities, self.classes)


def fitted(features: np.ndarray, target: np.ndarray) -> Labelled:
    train_x, test_x, train_y, test_y = train_test_split(
        features, target, test_size=0.5, random_state=0, stratify=target
    )
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    model.fit(train_x, train_y)
    return Labelled(
        test_y.tolist(),
        model.predict(test_x).tolist(),
        model.predict_proba(test_x),
        model.classes_.tolist(),
    )


def random_labels(n: int, classes: list[Any], *, seed: int, skill: float = 1.5) -> Labelled:
    """A noisy but informative classifier: the true class gets a boosted score."""
    rng = np.random.default_rng(seed)
    true = rng.integers(0, len(classes), n)
    scores = rng.normal(size=(n, len(classes)))
    scores[np.arange(n), true] += skill
    probabilities = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
    labels = np.asarray(classes, dtype=object)
    return Labelled(
        labels[true].tolist(),
        labels[probabilities.argmax(axis=1)].tolist(),
        probabilities,
        list(classes),
    )


def random_regression(n: int, *, seed: int) -> tuple[list[float], list[float]]:
    rng = np.random.default_rng(seed)
    actual = rng.normal(10.0, 3.0, n)
    return actual.tolist(), (actual + rng.normal(0.5, 2.0, n)).tolist()


@pytest.fixture(scope="module")
def breast_cancer() -> Labelled:
    return fitted(*load_breast_cancer(return_X_y=True))


@pytest.fixture(scope="module")
def iris() -> Labelled:
    return fitted(*load_iris(return_X_y=True))


@pytest.fixture(scope="module")
def diabetes() -> tuple[list[float], list[float]]:
    features, target = load_diabetes(return_X_y=True)
    train_x, test_x, train_y, test_y = train_test_split(
        features, target, test_size=0.5, random_state=0
    )
    model = LinearRegression().fit(train_x, train_y)
    return test_y.tolist(), model.predict(test_x).tolist()


def in_sorted_order(data: Labelled) -> tuple[list[Any], np.ndarray]:
    """Classes sorted, with probability columns to match: the order scikit-learn's metric
    functions assume for `labels`."""
    order = sorted(range(len(data.classes)), key=lambda i: data.classes[i])
    return [data.classes[i] for i in order], data.probabilities[:, order]


def value(result: dict[str, Any], name: str) -> float:
    metric = result[name]
    assert metric is not None, name
    return float(metric["value"])


def width(result: dict[str, Any], name: str) -> float:
    metric = result[name]
    assert metric is not None, name
    return float(metric["ci_high"] - metric["ci_low"])


def exact(expected: float) -> Any:
    return pytest.approx(expected, rel=1e-9, abs=1e-12)


def assert_intervals_sound(result: dict[str, Any]) -> None:
    for name in (*CLASSIFICATION, *REGRESSION):
        metric = result.get(name)
        if metric is None:
            continue
        assert set(metric) == {"value", "ci_low", "ci_high"}
        assert all(isinstance(v, float) and math.isfinite(v) for v in metric.values())
        assert metric["ci_low"] <= metric["value"] <= metric["ci_high"], name
        if name in BOUNDED:
            assert metric["ci_low"] >= 0.0, name
            assert metric["ci_high"] <= 1.0, name


# -- values are scikit-learn's ------------------------------------------------------------


def check_binary(data: Labelled) -> None:
    result = data.metrics()
    positive = data.classes[1]
    actual, predicted, probs = data.actual, data.predicted, data.probabilities
    assert result["task"] == "classification"
    assert result["n"] == len(actual)
    assert value(result, "accuracy") == exact(metrics.accuracy_score(actual, predicted))
    assert value(result, "precision") == exact(
        metrics.precision_score(actual, predicted, pos_label=positive)
    )
    assert value(result, "recall") == exact(
        metrics.recall_score(actual, predicted, pos_label=positive)
    )
    assert value(result, "f1") == exact(metrics.f1_score(actual, predicted, pos_label=positive))
    is_positive = [label == positive for label in actual]
    assert value(result, "roc_auc") == exact(metrics.roc_auc_score(is_positive, probs[:, 1]))
    labels, sorted_probs = in_sorted_order(data)
    assert value(result, "log_loss") == exact(metrics.log_loss(actual, sorted_probs, labels=labels))
    assert_intervals_sound(result)


def test_binary_metrics_on_breast_cancer_equal_sklearn(breast_cancer: Labelled) -> None:
    check_binary(breast_cancer)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_binary_metrics_on_random_predictions_equal_sklearn(seed: int) -> None:
    check_binary(random_labels(3_000, [0, 1], seed=seed, skill=0.7))


def test_binary_metrics_with_string_labels_equal_sklearn() -> None:
    check_binary(random_labels(800, ["benign", "malignant"], seed=4))


def test_positive_label_is_the_second_class_even_when_not_sorted() -> None:
    data = random_labels(600, ["yes", "no"], seed=5)
    check_binary(data)
    flipped = classification_metrics(
        data.actual, data.predicted, data.probabilities[:, ::-1], ["no", "yes"]
    )
    assert value(flipped, "recall") == exact(
        metrics.recall_score(data.actual, data.predicted, pos_label="yes")
    )


def check_multiclass(data: Labelled) -> None:
    result = data.metrics()
    actual, predicted = data.actual, data.predicted
    assert result["n"] == len(actual)
    assert value(result, "accuracy") == exact(metrics.accuracy_score(actual, predicted))
    for name, score in (
        ("precision", metrics.precision_score),
        ("recall", metrics.recall_score),
        ("f1", metrics.f1_score),
    ):
        assert value(result, name) == exact(
            score(actual, predicted, average="macro", zero_division=0)
        ), name
    labels, sorted_probs = in_sorted_order(data)
    assert value(result, "roc_auc") == exact(
        metrics.roc_auc_score(actual, sorted_probs, multi_class="ovr", labels=labels)
    )
    assert value(result, "log_loss") == exact(metrics.log_loss(actual, sorted_probs, labels=labels))
    assert_intervals_sound(result)


def test_multiclass_metrics_on_iris_equal_sklearn(iris: Labelled) -> None:
    check_multiclass(iris)


def test_multiclass_metrics_with_string_labels_equal_sklearn() -> None:
    check_multiclass(random_labels(2_000, ["cat", "dog", "emu", "yak"], seed=6, skill=0.8))


def test_multiclass_labels_in_model_order_not_sorted_order() -> None:
    data = random_labels(1_500, ["zeta", "alpha", "mid"], seed=7)
    check_multiclass(data)


def check_regression(actual: list[float], predicted: list[float]) -> None:
    result = regression_metrics(actual, predicted)
    assert result["task"] == "regression"
    assert result["n"] == len(actual)
    assert value(result, "mae") == exact(metrics.mean_absolute_error(actual, predicted))
    assert value(result, "rmse") == exact(math.sqrt(metrics.mean_squared_error(actual, predicted)))
    assert value(result, "r2") == exact(metrics.r2_score(actual, predicted))
    assert_intervals_sound(result)


def test_regression_metrics_on_diabetes_equal_sklearn(
    diabetes: tuple[list[float], list[float]],
) -> None:
    check_regression(*diabetes)


@pytest.mark.parametrize("seed", [1, 2])
def test_regression_metrics_on_random_predictions_equal_sklearn(seed: int) -> None:
    check_regression(*random_regression(4_000, seed=seed))


# -- intervals ----------------------------------------------------------------------------


def test_proportions_have_wilson_intervals(breast_cancer: Labelled) -> None:
    result = breast_cancer.metrics()
    actual, predicted = np.asarray(breast_cancer.actual), np.asarray(breast_cancer.predicted)
    positive = breast_cancer.classes[1]
    hits = int(((actual == positive) & (predicted == positive)).sum())
    for name, successes, trials in (
        ("accuracy", int((actual == predicted).sum()), actual.size),
        ("precision", hits, int((predicted == positive).sum())),
        ("recall", hits, int((actual == positive).sum())),
    ):
        ci = stats.binomtest(successes, trials).proportion_ci(method="wilson")
        assert result[name]["ci_low"] == exact(ci.low), name
        assert result[name]["ci_high"] == exact(ci.high), name


def test_mean_errors_have_t_intervals(diabetes: tuple[list[float], list[float]]) -> None:
    actual, predicted = np.asarray(diabetes[0]), np.asarray(diabetes[1])
    result = regression_metrics(diabetes[0], diabetes[1])
    errors = predicted - actual
    n = errors.size

    def t_interval(values: np.ndarray) -> tuple[float, float]:
        low, high = stats.t.interval(0.95, n - 1, loc=values.mean(), scale=stats.sem(values))
        return float(low), float(high)

    low, high = t_interval(np.abs(errors))
    assert (result["mae"]["ci_low"], result["mae"]["ci_high"]) == (exact(low), exact(high))
    low, high = t_interval(errors**2)
    assert result["rmse"]["ci_low"] == exact(math.sqrt(low))
    assert result["rmse"]["ci_high"] == exact(math.sqrt(high))


def test_log_loss_has_a_t_interval_of_per_row_losses(breast_cancer: Labelled) -> None:
    result = breast_cancer.metrics()
    probs = breast_cancer.probabilities
    rows = np.arange(len(breast_cancer.actual))
    column = np.searchsorted(breast_cancer.classes, breast_cancer.actual)
    eps = np.finfo(np.float64).eps
    losses = -np.log(np.clip(probs[rows, column], eps, 1 - eps))
    low, high = stats.t.interval(0.95, losses.size - 1, loc=losses.mean(), scale=stats.sem(losses))
    assert result["log_loss"]["ci_low"] == exact(max(low, 0.0))
    assert result["log_loss"]["ci_high"] == exact(high)


def test_intervals_shrink_with_more_data() -> None:
    """Across the 5,000-row bootstrap subsample too: its interval is rescaled to all rows."""
    sizes = (400, 4_000, 40_000)
    binary = [random_labels(n, [0, 1], seed=8, skill=0.8).metrics() for n in sizes]
    multi = [random_labels(n, ["a", "b", "c"], seed=9).metrics() for n in sizes]
    regression = [regression_metrics(*random_regression(n, seed=10)) for n in sizes]
    for results, names in (
        (binary, CLASSIFICATION),
        (multi, CLASSIFICATION),
        (regression, REGRESSION),
    ):
        for name in names:
            widths = [width(result, name) for result in results]
            assert widths[0] > widths[1] > widths[2] > 0, (name, widths)
            # about 1 / sqrt(n): ten times the rows, roughly a third of the width
            assert 0.15 < widths[2] / widths[1] < 0.6, (name, widths)


def test_regression_intervals_cover_the_truth_at_their_level() -> None:
    """Over repeated samples from one population, each 95% interval holds the population
    value about 95 times in 100 (binomial slack: at least 88)."""
    actual, predicted = (np.asarray(a) for a in random_regression(400_000, seed=11))
    truth = {
        "mae": metrics.mean_absolute_error(actual, predicted),
        "rmse": math.sqrt(metrics.mean_squared_error(actual, predicted)),
        "r2": metrics.r2_score(actual, predicted),
    }
    rng = np.random.default_rng(12)
    covered = dict.fromkeys(truth, 0)
    for _ in range(100):
        rows = rng.choice(actual.size, 300, replace=False)
        result = regression_metrics(actual[rows].tolist(), predicted[rows].tolist())
        for name, true_value in truth.items():
            covered[name] += result[name]["ci_low"] <= true_value <= result[name]["ci_high"]
    assert all(count >= 88 for count in covered.values()), covered


@pytest.mark.slow
def test_classification_intervals_cover_the_truth_at_their_level() -> None:
    population = random_labels(400_000, [0, 1], seed=13, skill=1.0)
    actual, predicted = np.asarray(population.actual), np.asarray(population.predicted)
    probs = population.probabilities
    truth = {
        "accuracy": metrics.accuracy_score(actual, predicted),
        "precision": metrics.precision_score(actual, predicted),
        "f1": metrics.f1_score(actual, predicted),
        "roc_auc": metrics.roc_auc_score(actual, probs[:, 1]),
        "log_loss": metrics.log_loss(actual, probs),
    }
    rng = np.random.default_rng(14)
    covered = dict.fromkeys(truth, 0)
    for _ in range(60):
        rows = rng.choice(actual.size, 300, replace=False)
        result = classification_metrics(
            actual[rows].tolist(), predicted[rows].tolist(), probs[rows], [0, 1]
        )
        for name, true_value in truth.items():
            covered[name] += result[name]["ci_low"] <= true_value <= result[name]["ci_high"]
    assert all(count >= 51 for count in covered.values()), covered


def test_results_are_reproducible(iris: Labelled) -> None:
    assert iris.metrics() == iris.metrics()
    sample = random_regression(6_000, seed=15)
    assert regression_metrics(*sample) == regression_metrics(*sample)


# -- degenerate inputs --------------------------------------------------------------------


def test_no_rows_gives_no_metrics() -> None:
    assert classification_metrics([], [], None, [0, 1]) == {
        "task": "classification",
        "n": 0,
        **dict.fromkeys(CLASSIFICATION),
    }
    assert regression_metrics([], []) == {"task": "regression", "n": 0, **dict.fromkeys(REGRESSION)}


def test_one_row() -> None:
    result = classification_metrics([1], [1], np.array([[0.3, 0.7]]), [0, 1])
    assert result["n"] == 1
    assert value(result, "accuracy") == 1.0
    assert result["accuracy"]["ci_low"] > 0.0
    assert value(result, "recall") == 1.0
    assert result["roc_auc"] is None
    assert result["f1"] is None
    assert result["log_loss"] is None
    assert_intervals_sound(result)
    assert regression_metrics([1.0], [2.0]) == {
        "task": "regression",
        "n": 1,
        **dict.fromkeys(REGRESSION),
    }


def test_one_class_among_actuals() -> None:
    probabilities = np.array([[0.9, 0.1], [0.4, 0.6], [0.8, 0.2], [0.7, 0.3]])
    result = classification_metrics([0, 0, 0, 0], [0, 1, 0, 0], probabilities, [0, 1])
    assert result["roc_auc"] is None
    assert result["recall"] is None
    assert value(result, "precision") == 0.0
    assert value(result, "f1") == 0.0
    assert value(result, "log_loss") == exact(
        metrics.log_loss([0] * 4, probabilities, labels=[0, 1])
    )
    assert value(result, "accuracy") == 0.75
    assert_intervals_sound(result)


def test_constant_predictions() -> None:
    data = random_labels(300, [0, 1], seed=14)
    negatives = classification_metrics(data.actual, [0] * 300, data.probabilities, [0, 1])
    assert negatives["precision"] is None
    assert value(negatives, "recall") == 0.0
    assert value(negatives, "f1") == 0.0
    assert value(negatives, "roc_auc") == exact(
        metrics.roc_auc_score(data.actual, data.probabilities[:, 1])
    )
    assert_intervals_sound(negatives)
    actual, _ = random_regression(200, seed=15)
    flat = regression_metrics(actual, [10.0] * 200)
    assert value(flat, "r2") == exact(metrics.r2_score(actual, [10.0] * 200))
    assert_intervals_sound(flat)


def test_perfect_predictions_have_zero_width_error_intervals() -> None:
    actual, _ = random_regression(100, seed=16)
    result = regression_metrics(actual, actual)
    assert result["mae"] == {"value": 0.0, "ci_low": 0.0, "ci_high": 0.0}
    assert result["rmse"] == {"value": 0.0, "ci_low": 0.0, "ci_high": 0.0}
    assert value(result, "r2") == 1.0


def test_constant_actuals_have_no_r2() -> None:
    result = regression_metrics([3.0] * 50, np.linspace(2, 4, 50).tolist())
    assert result["r2"] is None
    assert result["mae"] is not None


def test_rows_that_are_not_finite_numbers_are_left_out() -> None:
    result = regression_metrics([1.0, 2.0, math.nan, 4.0, 5.0], [1.5, 2.0, 3.0, math.inf, 4.0])
    assert result["n"] == 3
    assert value(result, "mae") == exact(metrics.mean_absolute_error([1, 2, 5], [1.5, 2, 4]))


def test_without_probabilities_roc_auc_and_log_loss_are_none(breast_cancer: Labelled) -> None:
    result = classification_metrics(breast_cancer.actual, breast_cancer.predicted, None, [0, 1])
    assert result["roc_auc"] is None
    assert result["log_loss"] is None
    assert value(result, "f1") == exact(
        metrics.f1_score(breast_cancer.actual, breast_cancer.predicted)
    )


def test_actuals_outside_the_model_classes(iris: Labelled) -> None:
    actual = [*iris.actual, 7]
    predicted = [*iris.predicted, 0]
    probabilities = np.vstack([iris.probabilities, [[0.5, 0.25, 0.25]]])
    result = classification_metrics(actual, predicted, probabilities, iris.classes)
    assert value(result, "accuracy") == exact(metrics.accuracy_score(actual, predicted))
    assert value(result, "recall") == exact(
        metrics.recall_score(actual, predicted, average="macro", zero_division=0)
    )
    assert result["roc_auc"] is None
    assert result["log_loss"] is None


def test_a_class_with_a_single_actual_has_no_roc_auc() -> None:
    probabilities = np.array([[0.8, 0.2]] * 5 + [[0.3, 0.7]])
    result = classification_metrics([0] * 5 + [1], [0] * 5 + [1], probabilities, [0, 1])
    assert result["roc_auc"] is None
    assert value(result, "accuracy") == 1.0


def test_probabilities_that_do_not_quite_sum_to_one() -> None:
    data = random_labels(500, [0, 1, 2], seed=17)
    rough = data.probabilities.astype(np.float32) * np.float32(1.001)
    result = classification_metrics(data.actual, data.predicted, rough, data.classes)
    assert value(result, "log_loss") == pytest.approx(
        metrics.log_loss(data.actual, data.probabilities, labels=data.classes), rel=1e-5
    )


def test_malformed_probabilities_are_ignored(iris: Labelled) -> None:
    wrong_shape = iris.probabilities[:, :2]
    result = classification_metrics(iris.actual, iris.predicted, wrong_shape, iris.classes)
    assert result["roc_auc"] is None
    assert result["log_loss"] is None


def test_lengths_must_match() -> None:
    with pytest.raises(ValueError, match="3 actuals but 2 predictions"):
        classification_metrics([0, 1, 0], [0, 1], None, [0, 1])
    with pytest.raises(ValueError, match="1 actuals but 0 predictions"):
        regression_metrics([1.0], [])
