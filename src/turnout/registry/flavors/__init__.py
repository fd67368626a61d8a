"""Flavors by name: how each kind of artifact is loaded and called."""

from __future__ import annotations

from turnout.errors import BadRequest
from turnout.registry.flavors.base import Flavor, LoadedModel, ModelFacts, Prediction
from turnout.registry.flavors.lightgbm import LightGBMFlavor
from turnout.registry.flavors.mlflow import MlflowFlavor
from turnout.registry.flavors.onnx import OnnxFlavor
from turnout.registry.flavors.python import PythonFlavor
from turnout.registry.flavors.sklearn import SklearnFlavor
from turnout.registry.flavors.xgboost import XGBoostFlavor

FLAVORS: dict[str, Flavor] = {
    flavor.name: flavor
    for flavor in (
        SklearnFlavor(),
        OnnxFlavor(),
        XGBoostFlavor(),
        LightGBMFlavor(),
        MlflowFlavor(),
        PythonFlavor(),
    )
}


def get_flavor(name: str) -> Flavor:
    try:
        return FLAVORS[name]
    except KeyError:
        known = ", ".join(sorted(FLAVORS))
        raise BadRequest(f"unknown flavor {name!r}; known flavors: {known}") from None


__all__ = ["FLAVORS", "Flavor", "LoadedModel", "ModelFacts", "Prediction", "get_flavor"]
