"""The training pipeline: the same code and params retrain the model on new rows."""

from __future__ import annotations

import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler


def fit(data: pd.DataFrame, params: dict[str, str]) -> Pipeline:
    """A scaled logistic regression on every column but the target (`data.attrs`)."""
    target = data.attrs["target"]
    model = make_pipeline(StandardScaler(), LogisticRegression(C=float(params["C"]), max_iter=2000))
    return model.fit(data.drop(columns=[target]), data[target])
