"""MLflow model directories (an `MLmodel` file), loaded through mlflow's pyfunc.

What loading executes is read from the `MLmodel` file, never guessed from file names: a
flavor may keep its pickle under any name, and pyfunc may import a loader module or code
that came with the model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import yaml

from turnout import yamltext
from turnout.errors import InvalidArtifact
from turnout.registry.flavors.base import Features, Flavor, LoadedModel, ModelFacts, Prediction
from turnout.registry.flavors.sklearn import SklearnModel
from turnout.registry.optional import optional_import
from turnout.registry.signature import DType

MLFLOW_TYPES = {
    "double": DType.FP64,
    "float": DType.FP32,
    "long": DType.INT64,
    "integer": DType.INT64,
    "boolean": DType.BOOL,
    "string": DType.BYTES,
}

BUILTIN_LOADERS = frozenset({"mlflow.sklearn", "mlflow.onnx", "mlflow.xgboost", "mlflow.lightgbm"})
"""pyfunc loader modules of mlflow itself whose loading this module can judge; any other
loader module (mlflow.pyfunc.model included: a cloudpickled or code-defined PythonModel)
runs code that came with the model."""
CODE_KEYS = ("code", "python_model", "model_code_path", "cloudpickle_version")
"""python_function keys that mean pyfunc imports or unpickles the model's own code."""
PICKLE_SUFFIXES = {".pkl", ".pickle", ".joblib", ".sav"}


class MlflowModel(LoadedModel):
    def __init__(self, pyfunc: Any, meta: dict[str, Any], sklearn: SklearnModel | None) -> None:
        self.pyfunc = pyfunc
        self.meta = meta
        self.sklearn = sklearn
        if sklearn is not None:
            self.wants_frame = sklearn.wants_frame

    def predict(self, features: Features) -> Prediction:
        if self.sklearn is not None:
            return self.sklearn.predict(features)
        values = self.pyfunc.predict(features)
        if hasattr(values, "to_numpy"):
            values = values.to_numpy()
        values = np.asarray(values)
        if values.ndim == 2 and values.shape[1] == 1:
            values = values[:, 0]
        return Prediction(values)

    def facts(self) -> ModelFacts:
        names, dtype = _signature_inputs(self.meta)
        if self.sklearn is not None:
            facts = self.sklearn.facts()
            if names and not facts.feature_names:
                return ModelFacts(
                    feature_names=names,
                    n_features=len(names),
                    input_dtype=dtype,
                    classes=facts.classes,
                    handles_missing=facts.handles_missing,
                )
            return facts
        return ModelFacts(
            feature_names=names, n_features=len(names) if names else None, input_dtype=dtype
        )


def _signature_inputs(meta: dict[str, Any]) -> tuple[tuple[str, ...] | None, DType | None]:
    signature = meta.get("signature") or {}
    raw = signature.get("inputs")
    if not raw:
        return None, None
    specs: Any = yamltext.load(raw) if isinstance(raw, str) else raw
    names = tuple(str(s["name"]) for s in specs if "name" in s)
    types = {MLFLOW_TYPES.get(str(s.get("type")), DType.FP64) for s in specs}
    dtype = types.pop() if len(types) == 1 else DType.FP64
    return (names or None), dtype


class MlflowFlavor(Flavor):
    name = "mlflow"
    requires = "mlflow"

    def load(self, path: Path) -> LoadedModel:
        root = path if path.is_dir() else path.parent
        mlmodel = root / "MLmodel"
        if not mlmodel.is_file():
            raise InvalidArtifact("an mlflow model is a folder with an MLmodel file; none found")
        meta = read_mlmodel(root)
        if meta is None:
            raise InvalidArtifact("the MLmodel file is not a YAML mapping (aliases are refused)")
        pyfunc = optional_import("mlflow.pyfunc", self.name)
        try:
            model = pyfunc.load_model(str(root))
        except Exception as exc:  # mlflow wraps many failure kinds
            raise InvalidArtifact(f"mlflow could not load the model: {exc}") from exc
        sklearn = None
        if "sklearn" in meta.get("flavors", {}):
            mlflow_sklearn = optional_import("mlflow.sklearn", self.name)
            sklearn = SklearnModel(mlflow_sklearn.load_model(str(root)))
        return MlflowModel(model, meta, sklearn)

    def uses_pickle(self, path: Path) -> bool:
        root = path if path.is_dir() else path.parent
        if any(p.suffix.lower() in PICKLE_SUFFIXES for p in root.rglob("*")):
            return True
        # The pickle policy is about running what an upload carries: pyfunc importing the
        # model's own code is refused with it, as is an MLmodel that cannot be judged.
        meta = read_mlmodel(root)
        return meta is None or unpickles(meta) or runs_own_code(meta)


def read_mlmodel(root: Path) -> dict[str, Any] | None:
    """The parsed `MLmodel` file; None when it is missing or not a YAML mapping (which
    judging treats as the worst case)."""
    try:
        meta = yamltext.load((root / "MLmodel").read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    return meta if isinstance(meta, dict) else None


def _flavors(meta: dict[str, Any]) -> dict[str, dict[str, Any]]:
    flavors = meta.get("flavors")
    if not isinstance(flavors, dict):
        return {}
    return {str(k): v if isinstance(v, dict) else {} for k, v in flavors.items()}


def runs_own_code(meta: dict[str, Any]) -> bool:
    """Whether pyfunc loading imports code that came with the model: a `code` folder, a
    loader module that is not mlflow's own, a PythonModel (pickled or from a code file),
    or a model class named in the file."""
    flavors = _flavors(meta)
    pyfunc = flavors.get("python_function", {})
    if any(pyfunc.get(key) for key in CODE_KEYS):
        return True
    loader = pyfunc.get("loader_module")
    if loader is not None and loader not in BUILTIN_LOADERS:
        return True
    model_class = str(flavors.get("xgboost", {}).get("model_class", "xgboost.core.Booster"))
    return loader == "mlflow.xgboost" and not model_class.startswith("xgboost.")


def unpickles(meta: dict[str, Any]) -> bool:
    """Whether loading unpickles anything, whatever the file is called: scikit-learn's
    `pickled_model` unless stored as skops with mlflow's default trust, a cloudpickled
    PythonModel, a LightGBM scikit-learn model."""
    flavors = _flavors(meta)
    pyfunc = flavors.get("python_function", {})
    if pyfunc.get("python_model") or pyfunc.get("cloudpickle_version"):
        return True
    sklearn = flavors.get("sklearn")
    if sklearn is not None and (
        sklearn.get("serialization_format", "pickle") != "skops"
        or sklearn.get("skops_trusted_types")
    ):
        return True
    lightgbm = flavors.get("lightgbm")
    return lightgbm is not None and lightgbm.get("model_class") != "lightgbm.basic.Booster"
