"""LightGBM boosters saved with `save_model` (text format)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from turnout.errors import InvalidArtifact
from turnout.registry.flavors.base import (
    Features,
    Flavor,
    LoadedModel,
    ModelFacts,
    Prediction,
    split_probabilities,
)
from turnout.registry.flavors.sklearn import model_file
from turnout.registry.optional import optional_import
from turnout.registry.signature import DType

CLASSIFICATION_OBJECTIVES = ("binary", "multiclass", "multiclassova", "cross_entropy")


class LightGBMModel(LoadedModel):
    wants_frame = False

    def __init__(self, booster: Any) -> None:
        self.booster = booster
        objective = str(booster.params.get("objective", "")) or _objective_from_dump(booster)
        self.classifier = objective.split()[0] in CLASSIFICATION_OBJECTIVES
        n_classes = int(booster.params.get("num_class", 1) or 1)
        self.classes: tuple[int, ...] | None = None
        if self.classifier:
            self.classes = tuple(range(max(n_classes, 2)))

    def predict(self, features: Features) -> Prediction:
        raw = self.booster.predict(np.asarray(features, dtype=np.float64))
        if not self.classifier:
            return Prediction(np.asarray(raw))
        labels, probabilities = split_probabilities(raw, self.classes)
        return Prediction(labels.astype(np.int64), probabilities)

    def facts(self) -> ModelFacts:
        names = tuple(self.booster.feature_name())
        generic = all(n.startswith("Column_") for n in names)
        return ModelFacts(
            feature_names=None if generic else names,
            n_features=self.booster.num_feature(),
            input_dtype=DType.FP64,
            classes=self.classes,
            handles_missing=True,
        )


def _objective_from_dump(booster: Any) -> str:
    return str(booster.dump_model(num_iteration=0).get("objective", ""))


class LightGBMFlavor(Flavor):
    name = "lightgbm"
    requires = "lightgbm"

    def load(self, path: Path) -> LoadedModel:
        lgb = optional_import("lightgbm", self.name)
        file = model_file(path, {".txt", ".lgb", ".model"})
        try:
            booster = lgb.Booster(model_file=str(file))
        except lgb.basic.LightGBMError as exc:
            raise InvalidArtifact(f"{file.name} is not a loadable LightGBM model: {exc}") from exc
        return LightGBMModel(booster)
