"""Plain Python models: a file (or a folder with `model.py`) that defines `class Model`.

A model that takes tensors rather than a table says so with a class attribute `inputs`, a
list of `{"name", "datatype", "shape"}` (shape with -1 for the batch axis), e.g. a text model
`inputs = [{"name": "text", "datatype": "BYTES", "shape": [-1]}]`; its `predict` then gets
the array of its one input (texts as str), or a dict of arrays by input name.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

import numpy as np

from turnout.errors import InvalidArtifact
from turnout.registry.flavors.base import Features, Flavor, LoadedModel, ModelFacts, Prediction
from turnout.registry.signature import DType, TensorSpec


class PythonModel(LoadedModel):
    def __init__(self, instance: Any) -> None:
        if not callable(getattr(instance, "predict", None)):
            raise InvalidArtifact("class Model must define predict(self, X)")
        self.instance = instance
        self.wants_frame = bool(getattr(instance, "wants_frame", True))
        self.has_proba = callable(getattr(instance, "predict_proba", None))

    def predict(self, features: Features) -> Prediction:
        values = np.asarray(self.instance.predict(features))
        probabilities = None
        if self.has_proba:
            probabilities = np.asarray(self.instance.predict_proba(features), dtype=np.float64)
        return Prediction(values, probabilities)

    def facts(self) -> ModelFacts:
        declared = getattr(self.instance, "inputs", None)
        if declared is not None:
            return ModelFacts(tensors=_tensor_specs(declared), classes=self._classes())
        names = getattr(self.instance, "feature_names", None)
        classes = getattr(self.instance, "classes", None)
        return ModelFacts(
            feature_names=tuple(names) if names else None,
            n_features=getattr(self.instance, "n_features", None)
            or (len(names) if names else None),
            input_dtype=DType.FP64,
            classes=tuple(classes) if classes is not None else None,
            handles_missing=bool(getattr(self.instance, "handles_missing", False)),
        )

    def _classes(self) -> tuple[Any, ...] | None:
        classes = getattr(self.instance, "classes", None)
        return tuple(classes) if classes is not None else None


def _tensor_specs(declared: Any) -> tuple[TensorSpec, ...]:
    """`Model.inputs` as tensor specs, or a message saying what is wrong with it."""
    if not isinstance(declared, list | tuple) or not declared:
        raise InvalidArtifact("Model.inputs must be a non-empty list of input descriptions")
    specs = []
    for index, item in enumerate(declared):
        try:
            shape = item["shape"]
            if not isinstance(shape, list | tuple) or not all(
                isinstance(d, int) and not isinstance(d, bool) for d in shape
            ):
                raise TypeError("shape must be a list of integers")
            specs.append(TensorSpec(str(item["name"]), DType(item["datatype"]), tuple(shape)))
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidArtifact(
                f"Model.inputs[{index}] must be {{'name': str, 'datatype': one of "
                f"{[d.value for d in DType]}, 'shape': [-1, ...]}}: {exc}"
            ) from None
    return tuple(specs)


def _entry(path: Path) -> Path:
    if path.is_file():
        if path.suffix != ".py":
            raise InvalidArtifact(f"a python model is a .py file or a folder, got {path.name}")
        return path
    candidate = path / "model.py"
    if candidate.is_file():
        return candidate
    py_files = sorted(path.glob("*.py"))
    if len(py_files) == 1:
        return py_files[0]
    raise InvalidArtifact("a python model folder needs a model.py defining class Model")


class PythonFlavor(Flavor):
    name = "python"

    def load(self, path: Path) -> LoadedModel:
        file = _entry(path)
        module_name = "turnout_model_" + hashlib.sha256(str(file).encode()).hexdigest()[:16]
        spec = importlib.util.spec_from_file_location(module_name, file)
        if spec is None or spec.loader is None:
            raise InvalidArtifact(f"cannot import {file.name}")
        module = importlib.util.module_from_spec(spec)
        root = str(file.parent)
        sys.path.insert(0, root)
        try:
            spec.loader.exec_module(module)
            cls = getattr(module, "Model", None)
            if cls is None:
                raise InvalidArtifact(f"{file.name} defines no class Model")
            instance = cls()
            if callable(getattr(instance, "load", None)):
                instance.load(str(path))
        except InvalidArtifact:
            raise
        except Exception as exc:  # user code may raise anything
            raise InvalidArtifact(
                f"{file.name} failed to load: {type(exc).__name__}: {exc}"
            ) from exc
        finally:
            if root in sys.path:
                sys.path.remove(root)
        return PythonModel(instance)

    def runs_code(self, path: Path) -> bool:
        return True
