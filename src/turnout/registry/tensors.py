"""Tensor inputs carried as rows: one 2-D array, a row per batch item, each input's values
flattened side by side in signature order.

Every layer between the decoder and the model (batcher, host wire, shadows, the log) moves
one array with a row per prediction. Tensor inputs travel the same way: packed after
decoding, unpacked to their true shapes just before the model is called. A single input of
one datatype packs to a view (no copy) and keeps its numpy type on the wire.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias

import numpy as np

from turnout.registry.signature import DType, TensorSpec
from turnout.types import Array

TensorFeatures: TypeAlias = Array | Mapping[str, Array]
"""What a tensor model's `predict` receives: the array of its one input, else arrays by name."""

_EXACT_IN_FLOAT64 = frozenset(
    {DType.BOOL, DType.UINT8, DType.UINT16, DType.UINT32, DType.INT8, DType.INT16,
     DType.INT32, DType.FP16, DType.FP32, DType.FP64}
)  # fmt: skip
"""Datatypes whose every value float64 holds exactly (so mixed inputs may share it)."""


def carrier(specs: Sequence[TensorSpec]) -> np.dtype[Any]:
    """The dtype of packed rows: the inputs' own when they share one, float64 when that
    holds all of them exactly, else object (which the host wire sends as JSON)."""
    kinds = {spec.dtype for spec in specs}
    if len(kinds) == 1:
        return specs[0].dtype.numpy
    if kinds <= _EXACT_IN_FLOAT64:
        return np.dtype(np.float64)
    return np.dtype(object)


def pack(arrays: Sequence[Array], specs: Sequence[TensorSpec]) -> Array:
    """Arrays of shape [n, *item_shape], in spec order, as rows [n, total width]."""
    n = arrays[0].shape[0]
    if len(arrays) == 1:
        return arrays[0].reshape(n, specs[0].width)
    rows = np.empty((n, sum(spec.width for spec in specs)), dtype=carrier(specs))
    start = 0
    for array, spec in zip(arrays, specs, strict=True):
        rows[:, start : start + spec.width] = array.reshape(n, spec.width)
        start += spec.width
    return rows


def unpack(rows: Array, specs: Sequence[TensorSpec]) -> list[Array]:
    """Rows back into one array per input, each of its datatype and shape [n, *item_shape]."""
    n = rows.shape[0]
    arrays = []
    start = 0
    for spec in specs:
        part = rows[:, start : start + spec.width].reshape(n, *spec.item_shape)
        arrays.append(part.astype(spec.dtype.numpy, copy=False))
        start += spec.width
    return arrays


def features(rows: Array, specs: Sequence[TensorSpec]) -> TensorFeatures:
    """What the model's `predict` is given for these rows."""
    arrays = unpack(rows, specs)
    if len(specs) == 1:
        return arrays[0]
    return {spec.name: array for spec, array in zip(specs, arrays, strict=True)}


def example_rows(specs: Sequence[TensorSpec], n: int = 2) -> Array:
    """`n` rows of zeros (empty texts for BYTES), to prove and warm a model."""
    arrays = []
    for spec in specs:
        if spec.dtype is DType.BYTES:
            array = np.full((n, *spec.item_shape), "", dtype=object)
        else:
            array = np.zeros((n, *spec.item_shape), dtype=spec.dtype.numpy)
        arrays.append(array)
    return pack(arrays, specs)
