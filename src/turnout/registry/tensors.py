"""Tensor inputs carried as rows: one 2-D array, a row per batch item, each input's values
flattened side by side in signature order.

Every layer between the decoder and the model (batcher, host wire, shadows, the log) moves
one array with a row per prediction. Tensor inputs travel the same way: packed after
decoding, unpacked to their true shapes just before the model is called. A single input
packs to a view (no copy) and keeps its numpy type on the wire; numeric inputs of different
types travel as their raw bytes side by side, so nothing is converted on the way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias

import numpy as np

from turnout.registry.signature import DType, TensorSpec
from turnout.types import Array

TensorFeatures: TypeAlias = Array | Mapping[str, Array]
"""What a tensor model's `predict` receives: the array of its one input, else arrays by name."""


def carrier(specs: Sequence[TensorSpec]) -> np.dtype[Any]:
    """The dtype of packed rows: the inputs' own when they share one; bytes (uint8) when
    they are numbers of different types, each input's raw values side by side; else object
    (texts beside numbers, which the host wire sends as JSON)."""
    kinds = {spec.dtype for spec in specs}
    if len(kinds) == 1:
        return specs[0].dtype.numpy
    if DType.BYTES in kinds:
        return np.dtype(object)
    return np.dtype(np.uint8)


def pack(arrays: Sequence[Array], specs: Sequence[TensorSpec]) -> Array:
    """Arrays of shape [n, *item_shape], in spec order, as rows [n, total width]."""
    n = arrays[0].shape[0]
    if len(arrays) == 1:
        return arrays[0].reshape(n, specs[0].width)
    dtype = carrier(specs)
    if dtype == np.uint8:
        parts = [
            np.ascontiguousarray(array, dtype=spec.dtype.numpy).reshape(n, -1).view(np.uint8)
            for array, spec in zip(arrays, specs, strict=True)
        ]
        return np.concatenate(parts, axis=1)
    rows = np.empty((n, sum(spec.width for spec in specs)), dtype=dtype)
    start = 0
    for array, spec in zip(arrays, specs, strict=True):
        rows[:, start : start + spec.width] = array.reshape(n, spec.width)
        start += spec.width
    return rows


def unpack(rows: Array, specs: Sequence[TensorSpec]) -> list[Array]:
    """Rows back into one array per input, each of its datatype and shape [n, *item_shape]."""
    n = rows.shape[0]
    raw = len(specs) > 1 and carrier(specs) == np.uint8
    arrays = []
    start = 0
    for spec in specs:
        width = spec.width * spec.dtype.numpy.itemsize if raw else spec.width
        part = rows[:, start : start + width]
        if raw:
            part = np.ascontiguousarray(part).view(spec.dtype.numpy)
        arrays.append(part.reshape(n, *spec.item_shape).astype(spec.dtype.numpy, copy=False))
        start += width
    return arrays


def values_per_row(specs: Sequence[TensorSpec]) -> int:
    return sum(spec.width for spec in specs)


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
