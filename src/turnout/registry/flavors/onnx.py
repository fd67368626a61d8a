"""ONNX models run with onnxruntime (e.g. converted with skl2onnx, tf2onnx, torch.onnx)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from turnout.errors import InvalidArtifact
from turnout.registry.flavors.base import Features, Flavor, LoadedModel, ModelFacts, Prediction
from turnout.registry.flavors.sklearn import model_file
from turnout.registry.signature import DType, TensorSpec
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


TENSOR_TYPES = {
    "tensor(float)": DType.FP32,
    "tensor(double)": DType.FP64,
    "tensor(float16)": DType.FP16,
    "tensor(int8)": DType.INT8,
    "tensor(int16)": DType.INT16,
    "tensor(int32)": DType.INT32,
    "tensor(int64)": DType.INT64,
    "tensor(uint8)": DType.UINT8,
    "tensor(uint16)": DType.UINT16,
    "tensor(uint32)": DType.UINT32,
    "tensor(uint64)": DType.UINT64,
    "tensor(bool)": DType.BOOL,
    "tensor(string)": DType.BYTES,
}
"""Input types of models that take tensors, each as the datatype callers send."""


class OnnxModel(LoadedModel):
    """A table model (one input of shape [N, features]) or a tensor model (several inputs,
    or one of another rank), told apart by its input shapes."""

    wants_frame = False

    def __init__(self, session: ort.InferenceSession) -> None:
        inputs = session.get_inputs()
        self.session = session
        self.input = inputs[0]
        self.tensor = len(inputs) > 1 or len(self.input.shape) != 2
        """Whether the model takes tensors rather than a table."""
        if self.tensor:
            self.specs = tuple(_spec(node) for node in inputs)
            self.one_at_a_time = any(node.shape[0] == 1 for node in inputs)
            """The model's batch axis is fixed at 1: rows are run one by one."""
        elif self.input.type not in ONNX_TYPES:
            raise InvalidArtifact(f"unsupported ONNX input type {self.input.type}")
        else:
            self.np_type, self.dtype = ONNX_TYPES[self.input.type]
        outputs = session.get_outputs()
        self.label_name = outputs[0].name
        self.proba_name = next((o.name for o in outputs[1:] if "prob" in o.name.lower()), None)

    def predict(self, features: Features) -> Prediction:
        if self.tensor:
            return self._predict_tensors(features)
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

    def _predict_tensors(self, features: Features) -> Prediction:
        """Outputs keep the shape the model gives them."""
        if isinstance(features, Mapping):
            feed = {spec.name: np.asarray(features[spec.name]) for spec in self.specs}
        else:
            feed = {self.specs[0].name: np.asarray(features)}
        names = [self.label_name] + ([self.proba_name] if self.proba_name else [])
        n = len(next(iter(feed.values())))
        if self.one_at_a_time and n != 1:
            parts = [
                self.session.run(names, {k: v[i : i + 1] for k, v in feed.items()})
                for i in range(n)
            ]
            results = [np.concatenate([part[j] for part in parts]) for j in range(len(names))]
        else:
            results = self.session.run(names, feed)
        probabilities = _probabilities(results[1]) if self.proba_name else None
        return Prediction(np.asarray(results[0]), probabilities)

    def facts(self) -> ModelFacts:
        if self.tensor:
            return ModelFacts(tensors=self.specs)
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


def _spec(node: Any) -> TensorSpec:
    """An ONNX input as a tensor spec: -1 for the batch axis, every other axis fixed."""
    dtype = TENSOR_TYPES.get(node.type)
    if dtype is None:
        raise InvalidArtifact(f"input {node.name!r} has unsupported ONNX type {node.type}")
    shape = list(node.shape)
    if not shape:
        raise InvalidArtifact(f"input {node.name!r} is a scalar; inputs need a batch axis")
    if isinstance(shape[0], int) and shape[0] > 1:
        raise InvalidArtifact(
            f"input {node.name!r} has a fixed batch size of {shape[0]}; export the model with "
            "a dynamic (or size 1) first axis"
        )
    if not all(isinstance(d, int) and d > 0 for d in shape[1:]):
        raise InvalidArtifact(
            f"input {node.name!r} has shape {shape}: every axis after the first (the batch "
            "axis) must have a fixed size"
        )
    return TensorSpec(node.name, dtype, (-1, *shape[1:]))


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
