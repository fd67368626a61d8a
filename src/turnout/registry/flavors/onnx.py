"""ONNX models run with onnxruntime (e.g. converted with skl2onnx, tf2onnx, torch.onnx)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from turnout.errors import InvalidArtifact
from turnout.registry.flavors.base import Features, Flavor, LoadedModel, ModelFacts, Prediction
from turnout.registry.flavors.sklearn import model_file
from turnout.registry.signature import DType
from turnout.types import Array

ort.disable_telemetry_events()  # a server makes no connection its operator did not configure

ONNX_TYPES = {
    "tensor(float)": (np.float32, DType.FP32),
    "tensor(double)": (np.float64, DType.FP64),
    "tensor(int64)": (np.int64, DType.INT64),
    "tensor(int32)": (np.int32, DType.INT64),
    "tensor(bool)": (np.bool_, DType.BOOL),
    "tensor(string)": (np.object_, DType.BYTES),
}


class OnnxModel(LoadedModel):
    wants_frame = False

    def __init__(self, session: ort.InferenceSession) -> None:
        inputs = session.get_inputs()
        if len(inputs) != 1:
            names = ", ".join(i.name for i in inputs)
            raise InvalidArtifact(f"ONNX models with one input tensor are supported, got {names}")
        self.session = session
        self.input = inputs[0]
        if self.input.type not in ONNX_TYPES:
            raise InvalidArtifact(f"unsupported ONNX input type {self.input.type}")
        self.np_type, self.dtype = ONNX_TYPES[self.input.type]
        outputs = session.get_outputs()
        self.label_name = outputs[0].name
        self.proba_name = next((o.name for o in outputs[1:] if "prob" in o.name.lower()), None)

    def predict(self, features: Features) -> Prediction:
        array: Array = np.asarray(features).astype(self.np_type, copy=False)
        names = [self.label_name] + ([self.proba_name] if self.proba_name else [])
        results = self.session.run(names, {self.input.name: array})
        values = np.asarray(results[0])
        if values.ndim == 2 and values.shape[1] == 1:
            values = values[:, 0]
        probabilities = None
        if self.proba_name:
            probabilities = _probabilities(results[1])
        return Prediction(values, probabilities)

    def facts(self) -> ModelFacts:
        shape = self.input.shape
        n = shape[1] if len(shape) == 2 and isinstance(shape[1], int) else None
        classes = None
        if self.proba_name:
            classes = self._classes()
        return ModelFacts(n_features=n, input_dtype=self.dtype, classes=classes)

    def _classes(self) -> tuple[Any, ...] | None:
        meta = self.session.get_modelmeta().custom_metadata_map
        if "classes" in meta:
            return tuple(meta["classes"].split(","))
        return self._zipmap_keys()

    def _zipmap_keys(self) -> tuple[Any, ...] | None:
        """skl2onnx's ZipMap output is keyed by class label: read the keys off one zero row."""
        output = next(o for o in self.session.get_outputs() if o.name == self.proba_name)
        shape = self.input.shape
        if not output.type.startswith("seq(map(") or self.dtype is DType.BYTES:
            return None
        if len(shape) != 2 or not isinstance(shape[1], int):
            return None
        row: Array = np.zeros((1, shape[1]), dtype=self.np_type)
        try:
            (raw,) = self.session.run([output.name], {self.input.name: row})
        except Exception:  # onnxruntime raises its own untyped errors; classes stay unknown
            return None
        return tuple(raw[0].keys()) if raw and isinstance(raw[0], dict) else None


def _probabilities(raw: Any) -> np.ndarray[Any, Any]:
    if isinstance(raw, list) and raw and isinstance(raw[0], dict):  # skl2onnx ZipMap output
        keys = list(raw[0].keys())
        return np.array([[row[k] for k in keys] for row in raw], dtype=np.float64)
    return np.asarray(raw, dtype=np.float64)


class OnnxFlavor(Flavor):
    name = "onnx"

    def load(self, path: Path) -> LoadedModel:
        file = model_file(path, {".onnx"})
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        try:
            session = ort.InferenceSession(
                str(file), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise InvalidArtifact(f"{file.name} is not a loadable ONNX model: {exc}") from exc
        return OnnxModel(session)
