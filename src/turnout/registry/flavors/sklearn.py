"""scikit-learn estimators and pipelines stored with joblib, pickle or skops."""

from __future__ import annotations

import warnings
from copy import deepcopy
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import sklearn
import skops.io as sio
from sklearn.ensemble import (
    ExtraTreesClassifier,
    GradientBoostingClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.tree import DecisionTreeClassifier

from turnout.errors import InvalidArtifact, PolicyRefused
from turnout.registry.flavors.base import Features, Flavor, LoadedModel, ModelFacts, Prediction
from turnout.registry.flavors.skops_types import trusted_types
from turnout.registry.signature import DType

PICKLE_SUFFIXES = {".joblib", ".pkl", ".pickle", ".sav"}
SKOPS_SUFFIXES = {".skops"}


# Classifiers whose `predict` is, by construction, the class of highest `predict_proba`:
# for them one `predict_proba` call gives both answers, halving the work per request.
ARGMAX_CLASSIFIERS: tuple[type, ...] = (
    LogisticRegression,
    DecisionTreeClassifier,
    RandomForestClassifier,
    ExtraTreesClassifier,
    GradientBoostingClassifier,
    HistGradientBoostingClassifier,
    GaussianNB,
    MLPClassifier,
)


def _final_step(estimator: Any) -> Any:
    return estimator.steps[-1][1] if isinstance(estimator, Pipeline) else estimator


class SklearnModel(LoadedModel):
    def __init__(self, estimator: Any) -> None:
        if not hasattr(estimator, "predict"):
            raise InvalidArtifact(f"{type(estimator).__name__} has no predict method")
        self.estimator = estimator
        self.has_proba = hasattr(estimator, "predict_proba") and hasattr(estimator, "classes_")
        self.wants_frame = hasattr(estimator, "feature_names_in_")
        self.labels_from_proba = self.has_proba and isinstance(
            _final_step(estimator), ARGMAX_CLASSIFIERS
        )

    def predict(self, features: Features) -> Prediction:
        # The gateway refuses NaN and infinity before rows reach a model (unless the
        # model accepts missing values), so scikit-learn need not scan the input again.
        with sklearn.config_context(assume_finite=True):
            if self.labels_from_proba:
                proba = np.asarray(self.estimator.predict_proba(features), dtype=np.float64)
                return Prediction(self.estimator.classes_[proba.argmax(axis=1)], proba)
            values = np.asarray(self.estimator.predict(features))
            if not self.has_proba:
                return Prediction(values)
            proba = np.asarray(self.estimator.predict_proba(features), dtype=np.float64)
        return Prediction(values, proba)

    def prefer_arrays(self, example: pd.DataFrame) -> None:
        if not self.wants_frame:
            return
        plain = _without_feature_names(self.estimator)
        if plain is None:
            return
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                same = _same(self.predict(example), SklearnModel(plain).predict(example.to_numpy()))
        except Exception:  # any doubt keeps the DataFrame path
            return
        if same:
            self.estimator = plain
            self.wants_frame = False

    def facts(self) -> ModelFacts:
        est = self.estimator
        names = getattr(est, "feature_names_in_", None)
        classes = getattr(est, "classes_", None) if self.has_proba else None
        return ModelFacts(
            feature_names=tuple(str(n) for n in names) if names is not None else None,
            n_features=getattr(est, "n_features_in_", None),
            input_dtype=DType.FP64,
            classes=tuple(c.item() if hasattr(c, "item") else c for c in classes)
            if classes is not None
            else None,
            handles_missing=_handles_missing(est),
        )


def _without_feature_names(estimator: Any) -> Any | None:
    """A copy that takes arrays: feature names dropped from the estimator (and each step
    of a pipeline). None when a step selects columns by name (it needs a DataFrame)."""
    steps = [s for _, s in estimator.steps] if isinstance(estimator, Pipeline) else [estimator]
    if any(not _plain_estimator(s) for s in steps):
        return None
    copy = deepcopy(estimator)
    for step in [s for _, s in copy.steps] if isinstance(copy, Pipeline) else [copy]:
        if step != "passthrough" and hasattr(step, "feature_names_in_"):
            del step.feature_names_in_
    return copy


def _plain_estimator(step: Any) -> bool:
    return step == "passthrough" or (
        not hasattr(step, "transformers_") and not isinstance(step, Pipeline | FeatureUnion)
    )


def _same(a: Prediction, b: Prediction) -> bool:
    if not np.array_equal(a.values, b.values):
        return False
    if a.probabilities is None or b.probabilities is None:
        return a.probabilities is b.probabilities
    return bool(np.allclose(a.probabilities, b.probabilities, rtol=1e-12, atol=0))


def _handles_missing(estimator: Any) -> bool:
    tags = getattr(estimator, "__sklearn_tags__", None)
    if tags is None:
        return False
    try:
        return bool(tags().input_tags.allow_nan)
    except (AttributeError, TypeError, ValueError):
        return False


def load_pickled(path: Path) -> Any:
    try:
        return joblib.load(path)
    except ModuleNotFoundError as exc:
        raise InvalidArtifact(f"{path.name} needs a module that is not installed: {exc}") from exc
    except Exception as exc:  # truncated or foreign bytes make the unpickler raise anything
        raise InvalidArtifact(
            f"{path.name} is not a readable joblib/pickle file: {type(exc).__name__}: {exc}"
        ) from exc


def load_skops(path: Path) -> Any:
    try:
        untrusted = sio.get_untrusted_types(file=path)
    except Exception as exc:  # skops raises many kinds for a bad file
        raise InvalidArtifact(f"{path.name} is not a readable skops file: {exc}") from exc
    # skops only builds the types it is told to trust; trusting whatever a file names would
    # let an uploaded file call any function, which is what choosing skops over pickle avoids.
    refused = [name for name in untrusted if name not in trusted_types()]
    if refused:
        raise PolicyRefused(
            f"{path.name} holds objects turnout will not rebuild from a skops file: "
            f"{', '.join(refused[:10])}; only scikit-learn estimators and the NumPy/SciPy "
            "array types they hold are trusted"
        )
    try:
        return sio.load(path, trusted=untrusted)
    except Exception as exc:  # skops raises many kinds for a bad file
        raise InvalidArtifact(f"{path.name} is not a readable skops file: {exc}") from exc


def model_file(path: Path, suffixes: set[str]) -> Path:
    """The one file with a known suffix: `path` itself or the only match inside a folder."""
    if path.is_file():
        return path
    matches = sorted(p for p in path.rglob("*") if p.suffix.lower() in suffixes)
    if len(matches) != 1:
        found = ", ".join(p.name for p in matches) or "none"
        wanted = ", ".join(sorted(suffixes))
        raise InvalidArtifact(f"expected exactly one {wanted} file in the folder, found {found}")
    return matches[0]


class SklearnFlavor(Flavor):
    name = "sklearn"

    def load(self, path: Path) -> LoadedModel:
        file = model_file(path, PICKLE_SUFFIXES | SKOPS_SUFFIXES)
        if file.suffix.lower() in SKOPS_SUFFIXES:
            return SklearnModel(load_skops(file))
        return SklearnModel(load_pickled(file))

    def uses_pickle(self, path: Path) -> bool:
        file = model_file(path, PICKLE_SUFFIXES | SKOPS_SUFFIXES)
        return file.suffix.lower() not in SKOPS_SUFFIXES
