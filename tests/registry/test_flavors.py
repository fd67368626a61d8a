"""Each flavor round-trips: a model saved the way users save it predicts the same once
registered and loaded back, and a broken artifact is refused with a message that helps."""

from __future__ import annotations

import os
import pickle
from collections.abc import Iterator
from pathlib import Path

import lightgbm as lgb
import mlflow.sklearn
import numpy as np
import pandas as pd
import pytest
import skops.io as sio
import xgboost as xgb
from skl2onnx import to_onnx
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_diabetes, load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from tests.fixtures import python_models as pm
from tests.fixtures.models import (
    breast_cancer,
    python_reference,
    save_joblib,
    save_onnx,
    save_python,
    sklearn_pipeline,
    training_csv,
)
from tests.fixtures.registry import open_registry
from turnout.errors import BadRequest, InvalidArtifact, PolicyRefused
from turnout.registry.servable import Servable
from turnout.registry.service import NewVersion, Registry

Frame = tuple[pd.DataFrame, pd.Series]


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    with open_registry(tmp_path / "registry") as reg:
        yield reg


@pytest.fixture(scope="module")
def cancer() -> Frame:
    return breast_cancer()


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    return sklearn_pipeline()


def serve(
    registry: Registry,
    source: Path,
    flavor: str,
    *,
    training_data: Path | None = None,
    target: str | None = None,
) -> Servable:
    record = registry.register(
        NewVersion(
            model="m", source=source, flavor=flavor, training_data=training_data, target=target
        )
    )
    return registry.load(record)


def csv_of(folder: Path, features: pd.DataFrame, target: pd.Series, name: str) -> Path:
    frame = features.copy()
    frame["target"] = target.to_numpy()
    path = folder / name
    frame.to_csv(path, index=False)
    return path


# -- scikit-learn -------------------------------------------------------------------------


@pytest.mark.parametrize("with_training_data", [True, False], ids=["csv", "no-data"])
def test_sklearn_joblib_pipeline_on_named_columns(
    registry: Registry, tmp_path: Path, cancer: Frame, pipeline: Pipeline, with_training_data: bool
) -> None:
    features, _ = cancer
    csv = training_csv(tmp_path) if with_training_data else None
    servable = serve(
        registry,
        save_joblib(pipeline, tmp_path),
        "sklearn",
        training_data=csv,
        target="target" if csv else None,
    )

    signature = servable.signature
    assert signature.named is True
    assert signature.n_features == 30
    assert signature.names == tuple(features.columns)
    assert signature.classes == (0, 1)
    prediction = servable.predict(features.to_numpy())
    np.testing.assert_array_equal(prediction.values, pipeline.predict(features))
    assert prediction.probabilities is not None
    np.testing.assert_allclose(prediction.probabilities, pipeline.predict_proba(features))


def test_sklearn_pickle_fitted_on_array(registry: Registry, tmp_path: Path, cancer: Frame) -> None:
    features, target = cancer
    rows = features.to_numpy()
    forest = RandomForestClassifier(n_estimators=15, max_depth=4, random_state=0).fit(rows, target)
    path = tmp_path / "forest.pkl"
    path.write_bytes(pickle.dumps(forest))

    servable = serve(registry, path, "sklearn")

    assert servable.signature.named is False
    assert servable.signature.n_features == 30
    assert servable.signature.classes == (0, 1)
    prediction = servable.predict(rows)
    np.testing.assert_array_equal(prediction.values, forest.predict(rows))
    assert prediction.probabilities is not None
    np.testing.assert_allclose(prediction.probabilities, forest.predict_proba(rows))


def test_skops_pipeline(
    registry: Registry, tmp_path: Path, cancer: Frame, pipeline: Pipeline
) -> None:
    features, _ = cancer
    path = tmp_path / "model.skops"
    sio.dump(pipeline, path)

    servable = serve(registry, path, "sklearn")

    assert servable.signature.names == tuple(features.columns)
    prediction = servable.predict(features.to_numpy())
    np.testing.assert_array_equal(prediction.values, pipeline.predict(features))
    assert prediction.probabilities is not None
    np.testing.assert_allclose(prediction.probabilities, pipeline.predict_proba(features))


def test_skops_forest_with_sklearn_internal_types(
    registry: Registry, tmp_path: Path, cancer: Frame
) -> None:
    """Trees hold `sklearn.tree._tree.Tree`, which skops does not trust by default."""
    features, target = cancer
    forest = RandomForestClassifier(n_estimators=10, max_depth=3, random_state=0)
    forest.fit(features, target)
    path = tmp_path / "forest.skops"
    sio.dump(forest, path)

    prediction = serve(registry, path, "sklearn").predict(features.to_numpy())

    np.testing.assert_array_equal(prediction.values, forest.predict(features))
    assert prediction.probabilities is not None
    np.testing.assert_allclose(prediction.probabilities, forest.predict_proba(features))


def test_skops_file_naming_an_arbitrary_function_is_refused(
    registry: Registry, tmp_path: Path
) -> None:
    """Trusting every type a skops file names would make it as dangerous as a pickle."""
    path = tmp_path / "gadget.skops"
    sio.dump(make_pipeline(FunctionTransformer(os.system), LogisticRegression()), path)

    with pytest.raises(PolicyRefused, match=r"gadget.skops .*posix\.system"):
        registry.register(NewVersion(model="m", source=path, flavor="sklearn"))
    assert registry.list_models() == []


def test_sklearn_regressor_has_no_probabilities(registry: Registry, tmp_path: Path) -> None:
    features, target = load_diabetes(return_X_y=True, as_frame=True)
    model = make_pipeline(StandardScaler(), Ridge(alpha=0.5)).fit(features, target)
    csv = csv_of(tmp_path, features, target, "diabetes.csv")

    servable = serve(
        registry, save_joblib(model, tmp_path), "sklearn", training_data=csv, target="target"
    )

    assert servable.signature.classes is None
    assert servable.signature.output_dtype.value == "FP64"
    prediction = servable.predict(features.to_numpy())
    assert prediction.probabilities is None
    np.testing.assert_allclose(prediction.values, model.predict(features))


# -- ONNX ---------------------------------------------------------------------------------


def test_onnx_without_zipmap(registry: Registry, tmp_path: Path, cancer: Frame) -> None:
    features, _ = cancer
    path, model = save_onnx(tmp_path)
    rows = features.to_numpy(dtype=np.float32)

    servable = serve(registry, path, "onnx")

    assert servable.signature.n_features == 30
    assert servable.signature.classes == (0, 1)
    prediction = servable.predict(rows)
    np.testing.assert_array_equal(prediction.values, model.predict(rows))
    assert prediction.probabilities is not None
    np.testing.assert_allclose(prediction.probabilities, model.predict_proba(rows), atol=1e-5)


def test_onnx_with_zipmap_probabilities(registry: Registry, tmp_path: Path, cancer: Frame) -> None:
    features, target = cancer
    rows = features.to_numpy(dtype=np.float32)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(rows, target)
    path = tmp_path / "zipmap.onnx"
    path.write_bytes(to_onnx(model, rows[:1]).SerializeToString())  # ZipMap is the default

    servable = serve(registry, path, "onnx")

    prediction = servable.predict(rows)
    np.testing.assert_array_equal(prediction.values, model.predict(rows))
    assert prediction.probabilities is not None
    assert prediction.probabilities.shape == (len(rows), 2)
    np.testing.assert_allclose(prediction.probabilities, model.predict_proba(rows), atol=1e-5)


def test_onnx_zipmap_records_string_class_labels(
    registry: Registry, tmp_path: Path, cancer: Frame
) -> None:
    features, target = cancer
    rows = features.to_numpy(dtype=np.float32)
    labels = np.where(target == 1, "benign", "malignant")
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(rows, labels)
    path = tmp_path / "labels.onnx"
    path.write_bytes(to_onnx(model, rows[:1]).SerializeToString())

    servable = serve(registry, path, "onnx")

    assert servable.signature.classes == ("benign", "malignant")
    prediction = servable.predict(rows)
    np.testing.assert_array_equal(prediction.values, model.predict(rows))
    assert prediction.probabilities is not None
    np.testing.assert_allclose(prediction.probabilities, model.predict_proba(rows), atol=1e-5)


# -- XGBoost ------------------------------------------------------------------------------


def test_xgboost_classifier_json(registry: Registry, tmp_path: Path, cancer: Frame) -> None:
    features, target = cancer
    model = xgb.XGBClassifier(n_estimators=20, max_depth=3, random_state=0).fit(features, target)
    path = tmp_path / "model.json"
    model.save_model(path)

    servable = serve(
        registry, path, "xgboost", training_data=training_csv(tmp_path), target="target"
    )

    assert servable.signature.named is True
    assert servable.signature.names == tuple(features.columns)
    assert servable.signature.classes == (0, 1)
    prediction = servable.predict(features.to_numpy())
    np.testing.assert_array_equal(prediction.values, model.predict(features))
    assert prediction.probabilities is not None
    np.testing.assert_allclose(prediction.probabilities, model.predict_proba(features), rtol=1e-6)


def test_xgboost_regressor_json(registry: Registry, tmp_path: Path) -> None:
    rows, target = load_diabetes(return_X_y=True)
    model = xgb.XGBRegressor(n_estimators=20, max_depth=3, random_state=0).fit(rows, target)
    path = tmp_path / "regressor.json"
    model.save_model(path)

    servable = serve(registry, path, "xgboost")

    assert servable.signature.n_features == rows.shape[1]
    prediction = servable.predict(rows)
    assert prediction.probabilities is None
    np.testing.assert_allclose(prediction.values, model.predict(rows), rtol=1e-6)


# -- LightGBM -----------------------------------------------------------------------------


def test_lightgbm_binary_booster(registry: Registry, tmp_path: Path, cancer: Frame) -> None:
    features, target = cancer
    rows = features.to_numpy()
    params = {"objective": "binary", "num_leaves": 8, "verbose": -1, "seed": 0}
    booster = lgb.train(params, lgb.Dataset(rows, label=target.to_numpy()), num_boost_round=20)
    path = tmp_path / "model.txt"
    booster.save_model(path)

    servable = serve(registry, path, "lightgbm")

    assert servable.signature.classes == (0, 1)
    expected = np.asarray(booster.predict(rows))
    prediction = servable.predict(rows)
    np.testing.assert_array_equal(prediction.values, (expected > 0.5).astype(np.int64))
    assert prediction.probabilities is not None
    np.testing.assert_allclose(prediction.probabilities[:, 1], expected)
    np.testing.assert_allclose(prediction.probabilities[:, 0], 1.0 - expected)


def test_lightgbm_multiclass_booster(registry: Registry, tmp_path: Path) -> None:
    rows, target = load_iris(return_X_y=True)
    params = {"objective": "multiclass", "num_class": 3, "num_leaves": 4, "verbose": -1}
    booster = lgb.train(
        params, lgb.Dataset(rows, label=target, params={"min_data_in_leaf": 5}), num_boost_round=15
    )
    path = tmp_path / "iris.txt"
    booster.save_model(path)

    servable = serve(registry, path, "lightgbm")

    assert servable.signature.classes == (0, 1, 2)
    expected = np.asarray(booster.predict(rows))
    prediction = servable.predict(rows)
    np.testing.assert_array_equal(prediction.values, expected.argmax(axis=1))
    assert prediction.probabilities is not None
    np.testing.assert_allclose(prediction.probabilities, expected)


def test_lightgbm_named_features_with_training_csv(
    registry: Registry, tmp_path: Path, cancer: Frame
) -> None:
    """Column names with spaces (as in the CSV) still match the booster's features."""
    features, target = cancer
    params = {"objective": "binary", "num_leaves": 8, "verbose": -1, "seed": 0}
    booster = lgb.train(params, lgb.Dataset(features, label=target), num_boost_round=10)
    path = tmp_path / "named.txt"
    booster.save_model(path)

    servable = serve(
        registry, path, "lightgbm", training_data=training_csv(tmp_path), target="target"
    )

    assert servable.signature.n_features == 30
    prediction = servable.predict(features.to_numpy())
    assert prediction.probabilities is not None
    np.testing.assert_allclose(prediction.probabilities[:, 1], booster.predict(features))


# -- MLflow -------------------------------------------------------------------------------


# mlflow warns about its own type hints when mlflow.pyfunc is first imported.
@pytest.mark.filterwarnings("ignore:.*Any type hint is inferred as AnyType:UserWarning")
def test_mlflow_sklearn_model_folder(
    registry: Registry, tmp_path: Path, cancer: Frame, pipeline: Pipeline
) -> None:
    features, _ = cancer
    folder = tmp_path / "mlflow-model"
    mlflow.sklearn.save_model(pipeline, str(folder))

    record = registry.register(NewVersion(model="m", source=folder, flavor="mlflow"))
    servable = registry.load(record)

    assert record.artifact.kind == "dir"
    assert "MLmodel" in {f.path for f in record.artifact.files}
    assert servable.signature.names == tuple(features.columns)
    assert servable.signature.classes == (0, 1)
    prediction = servable.predict(features.to_numpy())
    np.testing.assert_array_equal(prediction.values, pipeline.predict(features))
    assert prediction.probabilities is not None
    np.testing.assert_allclose(prediction.probabilities, pipeline.predict_proba(features))


# -- plain Python -------------------------------------------------------------------------


def test_python_single_file(registry: Registry, tmp_path: Path, cancer: Frame) -> None:
    rows = cancer[0].to_numpy()

    servable = serve(registry, save_python(tmp_path), "python")

    assert servable.signature.n_features == 30
    prediction = servable.predict(rows)
    assert prediction.probabilities is None
    np.testing.assert_allclose(prediction.values, python_reference(rows))


def test_python_folder_reads_its_data_file(registry: Registry, tmp_path: Path) -> None:
    folder = pm.save_folder_model(tmp_path / "linear")
    rows = np.array([[30.0, 1.5, 4.0], [62.0, 0.2, 12.0], [18.0, 0.0, 0.0]])

    record = registry.register(NewVersion(model="m", source=folder, flavor="python"))
    servable = registry.load(record)

    assert {f.path for f in record.artifact.files} == {"model.py", "params.json"}
    assert servable.signature.names == ("age", "income", "tenure")
    np.testing.assert_allclose(servable.predict(rows).values, pm.folder_reference(rows))


def test_python_classifier_with_probabilities(
    registry: Registry, tmp_path: Path, cancer: Frame
) -> None:
    rows = cancer[0][["mean radius", "mean texture"]].to_numpy()

    servable = serve(registry, pm.write(tmp_path, pm.CLASSIFIER_MODEL), "python")

    assert servable.signature.classes == ("benign", "malignant")
    assert servable.signature.names == ("mean radius", "mean texture")
    labels, probabilities = pm.classifier_reference(rows)
    prediction = servable.predict(rows)
    np.testing.assert_array_equal(prediction.values, labels)
    assert prediction.probabilities is not None
    np.testing.assert_allclose(prediction.probabilities, probabilities)


# -- refusals -----------------------------------------------------------------------------

GARBAGE = b"\x00\x01not a model at all\xff\xfe" * 20


@pytest.mark.parametrize(
    ("name", "flavor", "message"),
    [
        ("model.joblib", "sklearn", "not a readable joblib/pickle file"),
        ("model.pkl", "sklearn", "not a readable joblib/pickle file"),
        ("model.skops", "sklearn", "not a readable skops file"),
        ("model.onnx", "onnx", "not a loadable ONNX model"),
        ("model.json", "xgboost", "not a loadable XGBoost model"),
        ("model.txt", "lightgbm", "not a loadable LightGBM model"),
    ],
)
def test_garbage_bytes_are_invalid_artifacts(
    registry: Registry, tmp_path: Path, name: str, flavor: str, message: str
) -> None:
    path = tmp_path / name
    path.write_bytes(GARBAGE)

    with pytest.raises(InvalidArtifact, match=message):
        registry.register(NewVersion(model="m", source=path, flavor=flavor))


def test_truncated_joblib_is_an_invalid_artifact(
    registry: Registry, tmp_path: Path, pipeline: Pipeline
) -> None:
    """A half-uploaded file: the unpickler fails midway with whatever error it hits."""
    path = save_joblib(pipeline, tmp_path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])

    with pytest.raises(InvalidArtifact, match=r"model\.joblib is not a readable joblib/pickle"):
        registry.register(NewVersion(model="m", source=path, flavor="sklearn"))


def test_pickle_of_something_that_is_not_a_model(registry: Registry, tmp_path: Path) -> None:
    path = save_joblib({"weights": [1, 2, 3]}, tmp_path)
    with pytest.raises(InvalidArtifact, match="dict has no predict method"):
        registry.register(NewVersion(model="m", source=path, flavor="sklearn"))


def test_python_file_without_model_class(registry: Registry, tmp_path: Path) -> None:
    path = pm.write(tmp_path, pm.NO_MODEL_CLASS)
    with pytest.raises(InvalidArtifact, match="defines no class Model"):
        registry.register(NewVersion(model="m", source=path, flavor="python"))


def test_python_model_that_raises_on_example_rows(registry: Registry, tmp_path: Path) -> None:
    path = pm.write(tmp_path, pm.RAISES_ON_PREDICT)
    with pytest.raises(InvalidArtifact, match=r"failed to predict.*weights were never trained"):
        registry.register(NewVersion(model="m", source=path, flavor="python"))


def test_python_model_without_signature_needs_training_data(
    registry: Registry, tmp_path: Path
) -> None:
    path = pm.write(tmp_path, pm.NO_SIGNATURE)
    with pytest.raises(InvalidArtifact, match=r"cannot tell what inputs.*--training-data"):
        registry.register(NewVersion(model="m", source=path, flavor="python"))


def test_mlflow_folder_without_mlmodel(registry: Registry, tmp_path: Path) -> None:
    folder = tmp_path / "not-mlflow"
    folder.mkdir()
    (folder / "model.pkl").write_bytes(GARBAGE)
    with pytest.raises(InvalidArtifact, match="MLmodel"):
        registry.register(NewVersion(model="m", source=folder, flavor="mlflow"))


def test_unknown_flavor(registry: Registry, tmp_path: Path) -> None:
    path = save_python(tmp_path)
    with pytest.raises(BadRequest, match=r"unknown flavor 'tensorflow'.*sklearn"):
        registry.register(NewVersion(model="m", source=path, flavor="tensorflow"))


def test_named_pipelines_serve_from_arrays_when_answers_match(tmp_path: Path) -> None:
    """A pipeline fitted on a DataFrame is served from plain arrays (no DataFrame per call)
    only when that gives identical answers; one that selects columns by name keeps frames."""
    features, target = breast_cancer()
    simple = sklearn_pipeline()
    by_name = make_pipeline(
        ColumnTransformer([("scale", StandardScaler(), ["mean radius", "mean texture"])]),
        LogisticRegression(),
    ).fit(features, target)
    rows = features.to_numpy()[:40]
    with open_registry(tmp_path) as registry:
        for name, model, takes_arrays in (("simple", simple, True), ("by-name", by_name, False)):
            record = registry.register(
                NewVersion(model=name, source=save_joblib(model, tmp_path, f"{name}.joblib"),
                           flavor="sklearn")
            )  # fmt: skip
            servable = registry.load(record)
            assert servable.model.wants_frame is not takes_arrays
            prediction = servable.predict(rows)
            np.testing.assert_array_equal(prediction.values, model.predict(features.iloc[:40]))
            np.testing.assert_allclose(  # same to the last bits (BLAS order may differ)
                prediction.probabilities, model.predict_proba(features.iloc[:40]), rtol=1e-12
            )
