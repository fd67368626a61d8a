"""XGBoost models saved with `save_model` (.json or .ubj)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from turnout.errors import InvalidArtifact
from turnout.registry.flavors.base import Features, Flavor, LoadedModel, ModelFacts, Prediction
from turnout.registry.flavors.sklearn import model_file
from turnout.registry.optional import optional_import
from turnout.registry.signature import DType


class XGBoostModel(LoadedModel):
    def __init__(self, estimator: Any, classifier: bool) -> None:
        self.estimator = estimator
        self.classifier = classifier
        self.wants_frame = estimator.get_booster().feature_names is not None

    def predict(self, features: Features) -> Prediction:
        values = np.asarray(self.estimator.predict(features))
        probabilities = None
        if self.classifier:
            probabilities = np.asarray(self.estimator.predict_proba(features), dtype=np.float64)
        return Prediction(values, probabilities)

    def facts(self) -> ModelFacts:
        booster = self.estimator.get_booster()
        names = booster.feature_names
        classes = None
        if self.classifier:
            classes = tuple(int(c) for c in getattr(self.estimator, "classes_", []))
        return ModelFacts(
            feature_names=tuple(names) if names else None,
            n_features=booster.num_features(),
            input_dtype=DType.FP64,
            classes=classes or None,
            handles_missing=True,
        )


class XGBoostFlavor(Flavor):
    name = "xgboost"
    requires = "xgboost"

    def load(self, path: Path) -> LoadedModel:
        xgb = optional_import("xgboost", self.name)
        file = model_file(path, {".json", ".ubj", ".bin", ".xgb", ".model"})
        try:
            booster = xgb.Booster(model_file=str(file))
            objective = json.loads(booster.save_config())["learner"]["objective"]["name"]
        except (xgb.core.XGBoostError, KeyError, ValueError) as exc:
            raise InvalidArtifact(f"{file.name} is not a loadable XGBoost model: {exc}") from exc
        classifier = objective.startswith(("binary:", "multi:"))
        estimator = xgb.XGBClassifier() if classifier else xgb.XGBRegressor()
        estimator.load_model(str(file))
        return XGBoostModel(estimator, classifier)
