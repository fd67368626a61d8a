"""Fit the reference model inside a peer's own venv and save it the way that peer loads it.

Run with the peer's interpreter (so the pickle matches its scikit-learn), standalone:

    <venv>/bin/python bench/make_model.py numpy-joblib OUT.joblib   # MLServer, bare app
    <venv>/bin/python bench/make_model.py mlflow-frame OUT_DIR      # mlflow models serve

`numpy-joblib` is the numpy-trained twin (no feature names: a raw OIP tensor is a plain
array, and a DataFrame-fitted pipeline warns on every array call). `mlflow-frame` keeps the
named columns, as `tests/fixtures/models.py::sklearn_pipeline()` does.
"""

from __future__ import annotations

import sys
from pathlib import Path

from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler


def reference(features: object, target: object) -> Pipeline:
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(features, target)


# joblib and mlflow are imported per kind: each peer's venv holds only that peer's packages.


def numpy_joblib(out: Path) -> None:
    import joblib

    features, target = load_breast_cancer(return_X_y=True)
    joblib.dump(reference(features, target), out)


def mlflow_frame(out: Path) -> None:
    import mlflow.sklearn

    features, target = load_breast_cancer(return_X_y=True, as_frame=True)
    model = reference(features, target)
    mlflow.sklearn.save_model(model, str(out), input_example=features.iloc[:1])


KINDS = {"numpy-joblib": numpy_joblib, "mlflow-frame": mlflow_frame}

if __name__ == "__main__":
    kind, target_path = sys.argv[1], Path(sys.argv[2])
    KINDS[kind](target_path)
