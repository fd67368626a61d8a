"""Decode the inputs of tensor models (see `turnout.registry.tensors`): every input checked
against its spec (name, datatype, shape beyond the batch axis, values), then packed as rows.
A request that fails a check is a 400 naming the input and what is wrong with it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from turnout.errors import BadRequest
from turnout.registry import tensors
from turnout.registry.signature import DType, TensorSpec
from turnout.types import Array


def decode_oip(
    given: list[tuple[str, list[int], str, Any]], specs: tuple[TensorSpec, ...]
) -> Array:
    """OIP inputs of a tensor model, each matched by name (a one-input model takes its one
    input under any name) and checked against its spec, packed as rows."""
    if len(specs) == 1 and len(given) == 1:
        pairs = [(specs[0], given[0])]
    else:
        by_name = {t[0]: t for t in given}
        if len(by_name) != len(given):
            raise BadRequest("two inputs have the same name")
        _match(by_name, specs)
        pairs = [(spec, by_name[spec.name]) for spec in specs]
    arrays = [_checked_tensor(spec, name, shape, datatype, data)
              for spec, (name, shape, datatype, data) in pairs]  # fmt: skip
    return _packed(arrays, specs)


def _match(by_name: dict[str, Any], specs: tuple[TensorSpec, ...]) -> None:
    wanted = [spec.name for spec in specs]
    unknown = sorted(set(by_name) - set(wanted))
    if unknown:
        raise BadRequest(f"unknown inputs {unknown}; the model's inputs are {wanted}")
    missing = [name for name in wanted if name not in by_name]
    if missing:
        raise BadRequest(f"missing inputs {missing}; the model's inputs are {wanted}")


def _checked_tensor(
    spec: TensorSpec, name: str, shape: list[int], datatype: str, data: Any
) -> Array:
    """One OIP input as an array of its spec's type and shape, or a 400 naming what is off."""
    what = f"input {name!r}"
    if datatype != spec.dtype.value:
        raise BadRequest(f"{what}: datatype {datatype}, but the model takes {spec.dtype.value}")
    _check_shape(spec, shape, what)
    if not isinstance(data, list | np.ndarray):
        raise BadRequest(f"{what}: data must be a list")
    array = data if isinstance(data, np.ndarray) else _typed(data, spec, what)
    expected = math.prod(shape)
    if array.size != expected:
        raise BadRequest(f"{what}: shape {shape} needs {expected} values, data has {array.size}")
    return array.reshape(shape)


def _check_shape(spec: TensorSpec, shape: list[int] | tuple[int, ...], what: str) -> None:
    if len(shape) != len(spec.shape) or tuple(shape[1:]) != spec.item_shape:
        raise BadRequest(
            f"{what}: shape {list(shape)} does not match the model's {list(spec.shape)} "
            "(-1 is the batch axis)"
        )


_KINDS = {"b": "b", "u": "iu", "i": "iu", "f": "iuf"}
"""Which numpy kinds of JSON data each kind of datatype accepts (ints fit float types)."""


def _typed(data: Any, spec: TensorSpec, what: str) -> Array:
    """JSON data (flat or nested lists) as an array of the spec's datatype."""
    if spec.dtype is DType.BYTES:
        return _texts(data, what)
    try:
        array = np.asarray(data)
    except (ValueError, TypeError) as exc:
        raise BadRequest(f"{what}: data is not a regular array ({exc})") from None
    target = spec.dtype.numpy
    if array.dtype.kind not in _KINDS[target.kind]:
        bad = _offender(data, target.kind)
        if bad is None:
            raise BadRequest(f"{what}: a value is outside the range of {spec.dtype.value}")
        raise BadRequest(f"{what}: {spec.dtype.value} data holds {bad}")
    if target.kind in "iu" and array.size:
        info = np.iinfo(target)
        if array.min() < info.min or array.max() > info.max:
            raise BadRequest(f"{what}: a value is outside the range of {spec.dtype.value}")
    return array.astype(target, copy=False)


def _offender(data: Any, kind: str) -> str | None:
    """The first value in (nested) `data` that a tensor of this numpy kind cannot hold,
    described; None when every value is of the right type."""
    stack = [data]
    while stack:
        value = stack.pop()
        if isinstance(value, list):
            stack.extend(reversed(value))
        elif value is None:
            return "null (a tensor cannot hold missing values)"
        elif isinstance(value, bool) != (kind == "b") or not isinstance(value, int | float):
            return f"{type(value).__name__} {value!r:.40}"
        elif kind in "iu" and isinstance(value, float):
            return f"float {value!r:.40}, not an integer"
    return None


def _texts(data: Any, what: str) -> Array:
    try:
        array = np.asarray(data, dtype=object)
    except (ValueError, TypeError) as exc:
        raise BadRequest(f"{what}: data is not a regular array ({exc})") from None
    bad = next((v for v in array.ravel() if not isinstance(v, str)), None)
    if bad is not None:
        raise BadRequest(f"{what}: BYTES data holds {type(bad).__name__} {bad!r:.40}, not text")
    return array


def _packed(arrays: list[Array], specs: tuple[TensorSpec, ...]) -> Array:
    sizes = {array.shape[0] for array in arrays}
    if len(sizes) != 1:
        batch = {spec.name: array.shape[0] for spec, array in zip(specs, arrays, strict=True)}
        raise BadRequest(f"inputs have different batch sizes: {batch}")
    if not sizes.pop():
        raise BadRequest("the request holds no rows")
    return tensors.pack(arrays, specs)


def decode_native(request: dict[str, Any], specs: tuple[TensorSpec, ...]) -> Array:
    """Native, KServe v1 and MLflow payloads for a tensor model: `instances` (one item per
    row: the input's value, or a record of every input by name), or `inputs` (the batch of
    a one-input model, or each input's batch by name); `dataframe_split` (and so MLflow's
    CSV and columnar forms) with a column per input."""
    if "dataframe_split" in request:
        instances: Any = _split_records(request["dataframe_split"])
    else:
        instances = request.get("instances", request.get("dataframe_records"))
    if instances is None and isinstance(request.get("inputs"), dict):
        columns: dict[str, Any] = request["inputs"]
        _match(columns, specs)
        return _packed([_native_tensor(spec, columns[spec.name]) for spec in specs], specs)
    if instances is None:
        instances = request.get("inputs")
    if not isinstance(instances, list) or not instances:
        raise BadRequest("expected a non-empty 'instances' list, one item per row")
    records = [isinstance(item, dict) for item in instances]
    if all(records):
        for i, record in enumerate(instances):
            missing = [spec.name for spec in specs if spec.name not in record]
            if missing:
                raise BadRequest(f"instance {i} lacks inputs {missing}")
        batches = [[record[spec.name] for record in instances] for spec in specs]
        arrays = [_native_tensor(spec, batch) for spec, batch in zip(specs, batches, strict=True)]
        return _packed(arrays, specs)
    if any(records):
        raise BadRequest("'instances' mixes records and values")
    if len(specs) > 1:
        names = [spec.name for spec in specs]
        raise BadRequest(f"this model takes several inputs {names}: send records by input name")
    return _packed([_native_tensor(specs[0], instances)], specs)


def _split_records(split: Any) -> list[dict[str, Any]]:
    if not isinstance(split, dict) or not isinstance(split.get("data"), list):
        raise BadRequest("'dataframe_split' must be an object with 'columns' and 'data'")
    columns = split.get("columns")
    if not isinstance(columns, list) or not all(
        isinstance(row, list) and len(row) == len(columns) for row in split["data"]
    ):
        raise BadRequest(
            "this model takes tensors: 'dataframe_split' needs 'columns' naming its inputs "
            "and one value per column in every row of 'data'"
        )
    return [dict(zip(map(str, columns), row, strict=True)) for row in split["data"]]


def _native_tensor(spec: TensorSpec, batch: Any) -> Array:
    what = f"input {spec.name!r}"
    if not isinstance(batch, list):
        raise BadRequest(f"{what}: expected a list with one item per row")
    array = _typed(batch, spec, what)
    _check_shape(spec, array.shape, what)
    return array
