"""What the tour's steps share: the names they create, the data, and a `Tour` holding the
client, the data and a scratch folder, passed to every step."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from turnout.client import Client
from turnout.examples.traffic import Actual

MODEL = "breast-cancer"
DEPLOYMENT = "breast-cancer-prod"
MODELS = Path(__file__).with_name("models")
"""Model and pipeline sources the tour registers (the `turnout.examples.models` package)."""


@dataclass(frozen=True)
class Data:
    """The breast-cancer data, whole and split 70/30 into training and holdout rows."""

    features: pd.DataFrame
    target: pd.Series
    x_train: pd.DataFrame
    x_test: pd.DataFrame
    y_train: pd.Series
    y_test: pd.Series

    @classmethod
    def load(cls) -> Data:
        features, target = load_breast_cancer(return_X_y=True, as_frame=True)
        x_train, x_test, y_train, y_test = train_test_split(
            features, target, test_size=0.3, random_state=7, stratify=target
        )
        return cls(features, target, x_train, x_test, y_train, y_test)


@dataclass
class Tour:
    """The state of one tour: the server it talks to, the data, a scratch folder with the
    training rows as CSV, and the true label of every request sent to `DEPLOYMENT` (posted
    as actuals once the traffic steps are done)."""

    client: Client
    data: Data
    workdir: Path
    training_csv: Path
    graded: list[Actual] = field(default_factory=list)

    def model_folder(self, name: str, module: str, settings: dict[str, Any]) -> Path:
        """A python-flavor model folder `name`: `models/<module>.py` as its `model.py`,
        beside the `settings.json` its `Model.load` reads."""
        folder = self.workdir / name
        folder.mkdir()
        shutil.copyfile(MODELS / f"{module}.py", folder / "model.py")
        (folder / "settings.json").write_text(json.dumps(settings))
        return folder


def train(x: pd.DataFrame, y: pd.Series, c: float) -> Pipeline:
    """The tour's own models: scaled logistic regression with regularization `c`."""
    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=1000)).fit(x, y)
