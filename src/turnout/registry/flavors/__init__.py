"""Flavors by name: how each kind of artifact is loaded and called.

Each flavor's module (and so its library: scikit-learn, onnxruntime, ...) is imported only
when that flavor is first used, so a process that never serves a flavor never pays for it.
"""

from __future__ import annotations

import importlib

from turnout.errors import BadRequest
from turnout.registry.flavors.base import Flavor, LoadedModel, ModelFacts, Prediction

FLAVOR_CLASSES: dict[str, str] = {
    "sklearn": "turnout.registry.flavors.sklearn:SklearnFlavor",
    "onnx": "turnout.registry.flavors.onnx:OnnxFlavor",
    "xgboost": "turnout.registry.flavors.xgboost:XGBoostFlavor",
    "lightgbm": "turnout.registry.flavors.lightgbm:LightGBMFlavor",
    "mlflow": "turnout.registry.flavors.mlflow:MlflowFlavor",
    "python": "turnout.registry.flavors.python:PythonFlavor",
}
"""Every flavor's class, by the name users give, as `module:Class`."""

_loaded: dict[str, Flavor] = {}


def get_flavor(name: str) -> Flavor:
    flavor = _loaded.get(name)
    if flavor is not None:
        return flavor
    try:
        module, _, cls = FLAVOR_CLASSES[name].partition(":")
    except KeyError:
        known = ", ".join(sorted(FLAVOR_CLASSES))
        raise BadRequest(f"unknown flavor {name!r}; known flavors: {known}") from None
    flavor_class: type[Flavor] = getattr(importlib.import_module(module), cls)
    flavor = _loaded[name] = flavor_class()
    return flavor


def flavor_module(name: str) -> str:
    """The module that implements a flavor (imported by a runner's template ahead of use)."""
    return FLAVOR_CLASSES[name].partition(":")[0]


__all__ = [
    "FLAVOR_CLASSES",
    "Flavor",
    "LoadedModel",
    "ModelFacts",
    "Prediction",
    "flavor_module",
    "get_flavor",
]
