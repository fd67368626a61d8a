"""The small interface every flavor implements: load files, describe the model, predict."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, TypeAlias

import numpy as np
import pandas as pd

from turnout.registry.signature import DType, TensorSpec
from turnout.types import JSON, Array

Features: TypeAlias = pd.DataFrame | Array | Mapping[str, Array]
"""A table (a DataFrame or a 2-D array), or a tensor model's input: the array of its one
input, else its arrays by input name."""


@dataclass(frozen=True, slots=True)
class Prediction:
    """What a model returned for n rows: values (labels or numbers) and class probabilities."""

    values: Array
    probabilities: Array | None = None


@dataclass(frozen=True, slots=True)
class ModelFacts:
    """What a loaded model says about its inputs and outputs, before any sample is seen."""

    feature_names: tuple[str, ...] | None = None
    n_features: int | None = None
    input_dtype: DType | None = None
    classes: tuple[JSON, ...] | None = None
    handles_missing: bool = False
    tensors: tuple[TensorSpec, ...] | None = None
    """Set for a model that takes tensors (not a table): its inputs, -1 for the batch axis."""


class LoadedModel(ABC):
    """A model in memory, ready to predict."""

    wants_frame: bool = True
    """Whether `predict` should receive a DataFrame (named columns) rather than an ndarray."""

    @abstractmethod
    def predict(self, features: Features) -> Prediction: ...

    def facts(self) -> ModelFacts:
        return ModelFacts()

    def prefer_arrays(self, example: pd.DataFrame) -> None:
        """Switch to taking plain arrays if that gives the same answers on `example`.

        Building a DataFrame per call costs more than many models' own `predict`; a
        flavor that can drop it without changing results overrides this.
        """
        return None


class Flavor(ABC):
    """How one kind of artifact is recognised and loaded."""

    name: ClassVar[str]
    requires: ClassVar[str | None] = None
    """The pip extra that provides this flavor's library, when it is optional."""

    @abstractmethod
    def load(self, path: Path) -> LoadedModel:
        """Load the artifact at `path` (a file or a folder, as registered)."""

    def uses_pickle(self, path: Path) -> bool:
        """Whether loading `path` unpickles anything (refused when pickle is disallowed)."""
        return False

    def runs_code(self, path: Path) -> bool:
        """Whether loading `path` runs code that came with it rather than only our
        libraries' (registering such a version needs the register-code permission)."""
        return self.uses_pickle(path)


def split_probabilities(
    probabilities: Array, classes: tuple[JSON, ...] | None
) -> tuple[Array, Array]:
    """Labels chosen by highest probability, and the probabilities as float64."""
    probs = np.asarray(probabilities, dtype=np.float64)
    if probs.ndim == 1:
        probs = np.column_stack([1.0 - probs, probs])
    index = probs.argmax(axis=1)
    labels = np.asarray(classes, dtype=object)[index] if classes else index
    return np.asarray(labels), probs
