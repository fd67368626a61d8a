"""Baseline statistics kept at registration: feature CDFs and the model's own predictions."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline

from tests.fixtures import python_models as pm
from tests.fixtures.models import breast_cancer, save_joblib, sklearn_pipeline, training_csv
from tests.fixtures.registry import open_registry
from turnout.registry.baseline import feature_stats
from turnout.registry.describe import PREDICTION_SAMPLE_ROWS
from turnout.registry.service import NewVersion, Registry

FAILS_ON_MANY_ROWS = """
import numpy as np


class Model:
    feature_names = ["a", "b"]

    def predict(self, X):
        X = np.asarray(X, dtype=float)
        if len(X) > 5:
            raise MemoryError("this model only takes a few rows at a time")
        return X[:, 0] - X[:, 1]
"""

INTEGER_LABELS = """
import numpy as np


class Model:
    feature_names = ["a", "b"]
    classes = [0, 1, 2]

    def predict_proba(self, X):
        X = np.asarray(X, dtype=float)
        scores = np.column_stack([X[:, 0], X[:, 1], np.zeros(len(X))])
        return np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)

    def predict(self, X):
        return self.predict_proba(X).argmax(axis=1)
"""


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    with open_registry(tmp_path / "registry") as reg:
        yield reg


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    return sklearn_pipeline()


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_csv(path, index=False)
    return path


# -- feature statistics -------------------------------------------------------------------


def test_numeric_stats_hold_a_101_point_cdf() -> None:
    values = pd.Series(np.random.default_rng(0).lognormal(size=5_000))
    stats = feature_stats(values)
    cdf = stats["cdf"]
    assert len(cdf) == 101
    assert all(isinstance(v, float) for v in cdf)
    assert np.all(np.diff(cdf) >= 0)
    assert cdf[0] == stats["min"]
    assert cdf[-1] == stats["max"]
    assert cdf[50] == pytest.approx(values.median())
    assert cdf[25] == pytest.approx(stats["quantiles"]["0.25"])
    np.testing.assert_allclose(cdf, np.quantile(values, np.linspace(0, 1, 101)))


def test_cdf_ignores_missing_values_and_keeps_repeats() -> None:
    stats = feature_stats(pd.Series([1.0, None, 2.0, 2.0, 2.0, 3.0]))
    assert stats["missing"] == 1
    assert len(stats["cdf"]) == 101
    assert stats["cdf"][0] == 1.0
    assert stats["cdf"][-1] == 3.0
    assert stats["cdf"].count(2.0) > 1
    assert np.all(np.diff(stats["cdf"]) >= 0)


def test_categorical_stats_have_no_cdf_and_can_be_forced() -> None:
    assert "cdf" not in feature_stats(pd.Series(["a", "b", "a"]))
    labels = pd.Series([0, 1, 1, 2, 1])
    assert feature_stats(labels)["kind"] == "numeric"
    forced = feature_stats(labels, categorical=True)
    assert forced["kind"] == "categorical"
    assert forced["frequencies"] == {"1": 3, "0": 1, "2": 1}
    assert forced["distinct"] == 3


# -- prediction baseline at registration --------------------------------------------------


def test_classifier_registration_records_its_label_frequencies(
    registry: Registry, tmp_path: Path, pipeline: Pipeline
) -> None:
    features, _ = breast_cancer()
    record = registry.register(
        NewVersion(
            model="bc",
            source=save_joblib(pipeline, tmp_path),
            flavor="sklearn",
            training_data=training_csv(tmp_path),
            target="target",
        )
    )
    assert record.training is not None
    predictions = record.training["prediction_stats"]
    expected = pd.Series(pipeline.predict(features)).value_counts()
    assert predictions["kind"] == "categorical"
    assert predictions["count"] == len(features)
    assert predictions["missing"] == 0
    assert predictions["frequencies"] == {str(k): int(v) for k, v in expected.items()}
    assert predictions["other"] == 0
    assert "cdf" in record.training["features"]["mean radius"]
    assert registry.get_version("bc", 1).training == record.training


def test_string_labels_of_a_python_classifier(registry: Registry, tmp_path: Path) -> None:
    features, target = breast_cancer()
    data = features[["mean radius", "mean texture"]].assign(target=target)
    record = registry.register(
        NewVersion(
            model="py",
            source=pm.write(tmp_path / "clf", pm.CLASSIFIER_MODEL),
            flavor="python",
            training_data=write_csv(data, tmp_path / "train.csv"),
            target="target",
        )
    )
    assert record.training is not None
    labels, _ = pm.classifier_reference(data[["mean radius", "mean texture"]].to_numpy())
    expected = pd.Series(labels).value_counts()
    assert record.training["prediction_stats"]["frequencies"] == expected.to_dict()


def test_integer_labels_are_categories(registry: Registry, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    data = pd.DataFrame({"a": rng.normal(size=300), "b": rng.normal(size=300)})
    record = registry.register(
        NewVersion(
            model="ints",
            source=pm.write(tmp_path / "ints", INTEGER_LABELS),
            flavor="python",
            training_data=write_csv(data, tmp_path / "train.csv"),
        )
    )
    assert record.training is not None
    stats = record.training["prediction_stats"]
    scores = np.column_stack([data["a"], data["b"], np.zeros(300)])
    expected = pd.Series(scores.argmax(axis=1)).value_counts()
    assert stats["kind"] == "categorical"
    assert stats["frequencies"] == {str(k): int(v) for k, v in expected.items()}


def test_regressor_predictions_on_a_seeded_sample_of_large_training_data(
    registry: Registry, tmp_path: Path
) -> None:
    rng = np.random.default_rng(2)
    n = PREDICTION_SAMPLE_ROWS + 2_000
    data = pd.DataFrame(rng.normal(size=(n, 3)), columns=pm.FOLDER_FEATURES)
    csv = write_csv(data, tmp_path / "train.csv")

    def register() -> dict[str, Any]:
        record = registry.register(
            NewVersion(
                model="reg",
                source=pm.save_folder_model(tmp_path / "reg"),
                flavor="python",
                training_data=csv,
            )
        )
        assert record.training is not None
        stats: dict[str, Any] = record.training["prediction_stats"]
        return stats

    stats = register()
    outputs = pm.folder_reference(data.to_numpy())
    assert stats["kind"] == "numeric"
    assert stats["count"] == PREDICTION_SAMPLE_ROWS
    assert outputs.min() <= stats["min"] <= stats["max"] <= outputs.max()
    assert stats["mean"] == pytest.approx(outputs.mean(), abs=0.1)
    assert len(stats["cdf"]) == 101
    assert register() == stats


def test_a_model_that_fails_on_its_training_rows_still_registers(
    registry: Registry, tmp_path: Path
) -> None:
    rng = np.random.default_rng(3)
    data = pd.DataFrame({"a": rng.normal(size=50), "b": rng.normal(size=50)})
    record = registry.register(
        NewVersion(
            model="picky",
            source=pm.write(tmp_path / "picky", FAILS_ON_MANY_ROWS),
            flavor="python",
            training_data=write_csv(data, tmp_path / "train.csv"),
        )
    )
    assert record.training is not None
    assert "prediction_stats" not in record.training
    assert set(record.training["features"]) == {"a", "b"}
    assert record.training["rows"] == 50


def test_no_training_data_means_no_baseline(registry: Registry, tmp_path: Path) -> None:
    record = registry.register(
        NewVersion(model="bare", source=pm.save_folder_model(tmp_path / "m"), flavor="python")
    )
    assert record.training is None
