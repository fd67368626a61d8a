"""Input/output signatures: what a version accepts and returns, inferred from a sample.

Most models take a table (named or numbered columns). Others take tensors: one or more named
inputs of any shape beyond the batch axis (images, token ids, texts); their signature lists
each input's name, datatype and shape, with -1 for the batch axis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd

from turnout.types import JSON


class DType(StrEnum):
    """Open Inference Protocol tensor datatypes that turnout accepts and returns."""

    BOOL = "BOOL"
    UINT8 = "UINT8"
    UINT16 = "UINT16"
    UINT32 = "UINT32"
    UINT64 = "UINT64"
    INT8 = "INT8"
    INT16 = "INT16"
    INT32 = "INT32"
    INT64 = "INT64"
    FP16 = "FP16"
    FP32 = "FP32"
    FP64 = "FP64"
    BYTES = "BYTES"

    @classmethod
    def of(cls, dtype: Any) -> DType:
        if isinstance(dtype, pd.api.extensions.ExtensionDtype):
            # pandas' own types (str columns in pandas 3, categories, nullable numbers)
            dtype = getattr(dtype, "numpy_dtype", None) or np.dtype(object)
        kind = np.dtype(dtype).kind
        if kind == "b":
            return cls.BOOL
        if kind in "iu":
            return cls.INT64
        if kind == "f":
            return cls.FP32 if np.dtype(dtype).itemsize == 4 else cls.FP64
        return cls.BYTES

    @property
    def numeric(self) -> bool:
        return self is not DType.BYTES

    @property
    def numpy(self) -> np.dtype[Any]:
        """The numpy type that holds this datatype's values (object for BYTES: str)."""
        return NUMPY_DTYPES[self]


NUMPY_DTYPES: dict[DType, np.dtype[Any]] = {
    DType.BOOL: np.dtype(np.bool_),
    DType.UINT8: np.dtype(np.uint8),
    DType.UINT16: np.dtype(np.uint16),
    DType.UINT32: np.dtype(np.uint32),
    DType.UINT64: np.dtype(np.uint64),
    DType.INT8: np.dtype(np.int8),
    DType.INT16: np.dtype(np.int16),
    DType.INT32: np.dtype(np.int32),
    DType.INT64: np.dtype(np.int64),
    DType.FP16: np.dtype(np.float16),
    DType.FP32: np.dtype(np.float32),
    DType.FP64: np.dtype(np.float64),
    DType.BYTES: np.dtype(object),
}


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    dtype: DType


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One named input tensor: its datatype and shape, -1 first for the batch axis."""

    name: str
    dtype: DType
    shape: tuple[int, ...]

    @property
    def item_shape(self) -> tuple[int, ...]:
        """The shape of one row (everything after the batch axis)."""
        return self.shape[1:]

    @property
    def width(self) -> int:
        """Values per row."""
        return math.prod(self.item_shape)

    def to_dict(self) -> dict[str, JSON]:
        return {"name": self.name, "datatype": self.dtype.value, "shape": list(self.shape)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TensorSpec:
        return cls(str(data["name"]), DType(data["datatype"]), tuple(int(d) for d in data["shape"]))


@dataclass(frozen=True, slots=True)
class Signature:
    """The input columns (in order), the output type, class labels and a few example rows."""

    columns: tuple[Column, ...]
    named: bool
    """True when the model was fitted on named columns (it then sees a DataFrame)."""
    output_dtype: DType = DType.FP64
    classes: tuple[JSON, ...] | None = None
    """Class labels in probability-column order, for classifiers that give probabilities."""
    allow_missing: bool = False
    """Whether null inputs (NaN) may reach the model."""
    example: tuple[tuple[JSON, ...], ...] = field(default_factory=tuple)
    tensors: tuple[TensorSpec, ...] = ()
    """The input tensors of a model that takes tensors rather than a table (then `columns`
    is empty); empty for tabular models."""
    output_shape: tuple[int, ...] | None = None
    """The shape of the `predict` output, -1 first, for tensor models."""

    @property
    def n_features(self) -> int:
        return len(self.columns)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def input_dtype(self) -> DType:
        """Datatype of the single `input-0` tensor that holds every column."""
        kinds = {c.dtype for c in self.columns}
        if DType.BYTES in kinds:
            return DType.BYTES
        if kinds <= {DType.FP32}:
            return DType.FP32
        if kinds <= {DType.INT64, DType.INT32}:
            return DType.INT64
        if kinds <= {DType.BOOL}:
            return DType.BOOL
        return DType.FP64

    @property
    def numeric(self) -> bool:
        return all(c.dtype.numeric for c in self.columns)

    def to_dict(self) -> dict[str, JSON]:
        if self.tensors:
            return {
                "layout": "tensors",
                "inputs": [t.to_dict() for t in self.tensors],
                "output_datatype": self.output_dtype.value,
                "output_shape": list(self.output_shape or (-1,)),
                "classes": list(self.classes) if self.classes is not None else None,
            }
        return {
            "inputs": [{"name": c.name, "datatype": c.dtype.value} for c in self.columns],
            "named": self.named,
            "output_datatype": self.output_dtype.value,
            "classes": list(self.classes) if self.classes is not None else None,
            "allow_missing": self.allow_missing,
            "example": [list(row) for row in self.example],
        }

    @classmethod
    def from_dict(cls, data: dict[str, JSON]) -> Signature:
        classes = data.get("classes")
        if data.get("layout") == "tensors":
            return cls(
                columns=(),
                named=False,
                output_dtype=DType(data.get("output_datatype", "FP64")),
                classes=tuple(classes) if classes is not None else None,
                tensors=tuple(TensorSpec.from_dict(t) for t in data["inputs"]),
                output_shape=tuple(int(d) for d in data.get("output_shape") or (-1,)),
            )
        return cls(
            columns=tuple(Column(c["name"], DType(c["datatype"])) for c in data["inputs"]),
            named=bool(data.get("named", False)),
            output_dtype=DType(data.get("output_datatype", "FP64")),
            classes=tuple(classes) if classes is not None else None,
            allow_missing=bool(data.get("allow_missing", False)),
            example=tuple(tuple(row) for row in data.get("example", [])),
        )


def to_python(value: Any) -> JSON:
    """A numpy scalar or plain value as the JSON value a user would write."""
    if isinstance(value, np.generic):
        return value.item()
    return value


def example_rows(frame: pd.DataFrame, limit: int = 5) -> tuple[tuple[JSON, ...], ...]:
    head = frame.head(limit)
    rows = head.astype(object).where(pd.notna(head), None).itertuples(index=False, name=None)
    return tuple(tuple(to_python(v) for v in row) for row in rows)


def columns_of(frame: pd.DataFrame) -> tuple[Column, ...]:
    return tuple(Column(str(name), DType.of(dtype)) for name, dtype in frame.dtypes.items())


def unnamed_columns(n_features: int, dtype: DType = DType.FP64) -> tuple[Column, ...]:
    return tuple(Column(f"f{i}", dtype) for i in range(n_features))
