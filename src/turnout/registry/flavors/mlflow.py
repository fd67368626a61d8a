"""MLflow model directories (an `MLmodel` file), loaded through mlflow's pyfunc."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import yaml

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
    specs = yaml.safe_load(raw) if isinstance(raw, str) else raw
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
        meta = yaml.safe_load(mlmodel.read_text()) or {}
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
        return any(p.suffix in {".pkl", ".pickle", ".joblib"} for p in root.rglob("*"))
