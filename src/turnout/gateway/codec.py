"""Turn request payloads into model input rows, and predictions into response payloads.

Both protocols (Open Inference Protocol v2 and the native JSON API) decode into one
2-D array whose columns follow the signature, so the rest of the gateway is protocol-free.
Inputs of tensor models are checked and packed into such rows too (`tensor_inputs`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson

from turnout.errors import BadRequest
from turnout.gateway import binary, tensor_inputs
from turnout.registry.flavors import Prediction
from turnout.registry.signature import DType, Signature, to_python
from turnout.types import JSON, Array

OIP_DATATYPES = frozenset({*binary.NUMPY_TYPES, "BYTES"})


def _numeric(data: Any, what: str) -> Array:
    """Numbers (or nulls) as float64, refusing strings, nested garbage and ragged lists."""
    try:
        array = np.asarray(data)
    except (ValueError, TypeError) as exc:
        raise BadRequest(f"{what}: data is not a regular array ({exc})") from None
    kind = array.dtype.kind
    if kind in "iufb":
        return array.astype(np.float64, copy=False)
    if kind == "O":
        flat = array.ravel()
        bad = next((v for v in flat if v is not None and not _is_number(v)), None)
        if bad is None:
            try:
                values = [math.nan if v is None else v for v in flat]
                return np.array(values, dtype=np.float64).reshape(array.shape)
            except OverflowError:
                raise BadRequest(f"{what}: a number is too large for a float") from None
        raise BadRequest(f"{what}: expected numbers, got {type(bad).__name__} {bad!r:.40}")
    sample = array.ravel()[0] if array.size else None
    raise BadRequest(f"{what}: expected numbers, got {type(sample).__name__} {sample!r:.40}")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, str)


def _mixed(data: Any, what: str) -> Array:
    """Values for models with text columns, kept as Python objects."""
    try:
        array = np.asarray(data, dtype=object)
    except (ValueError, TypeError) as exc:
        raise BadRequest(f"{what}: data is not a regular array ({exc})") from None
    nested = next((v for v in array.ravel() if isinstance(v, list | dict)), None)
    if nested is not None:
        raise BadRequest(f"{what}: expected one value per cell, got {type(nested).__name__}")
    return array


def _values(data: Any, signature: Signature, what: str) -> Array:
    return _numeric(data, what) if signature.numeric else _mixed(data, what)


def check_rows(rows: Array, signature: Signature) -> Array:
    """Final checks every decoded batch passes before it may reach a model."""
    if rows.ndim != 2 or rows.shape[1] != signature.n_features:
        got = rows.shape[1] if rows.ndim == 2 else rows.shape
        raise BadRequest(f"expected {signature.n_features} features per row, got {got}")
    if rows.shape[0] == 0:
        raise BadRequest("the request holds no rows")
    if rows.dtype == np.float64 and np.isinf(rows).any():
        row, col = np.argwhere(np.isinf(rows))[0]
        raise BadRequest(f"infinite value at row {row}, column {signature.names[col]!r}")
    if not signature.allow_missing:
        missing = _missing_cell(rows)
        if missing is not None:
            row, col = missing
            raise BadRequest(
                f"missing value (null/NaN) at row {row}, column {signature.names[col]!r}; "
                "this model does not accept missing values"
            )
    return rows


def _missing_cell(rows: Array) -> tuple[int, int] | None:
    if rows.dtype == np.float64:
        mask = np.isnan(rows)
    else:
        mask = np.vectorize(lambda v: v is None or (isinstance(v, float) and v != v))(rows)
    if not mask.any():
        return None
    row, col = np.argwhere(mask)[0]
    return int(row), int(col)


# -- Open Inference Protocol v2 -------------------------------------------------------------


def _tensor(spec: Any, index: int) -> tuple[str, list[int], str, Any]:
    name, shape, datatype = binary.tensor_head(spec, index)
    if "data" not in spec:
        parameters = spec.get("parameters")
        if isinstance(parameters, dict) and "binary_data_size" in parameters:
            raise BadRequest(
                f"input {name!r} has parameters.binary_data_size but the request has no "
                "Inference-Header-Content-Length header"
            )
        raise BadRequest(f"input {name!r} has no data")
    return name, shape, datatype, spec["data"]


def _shaped(data: Any, shape: list[int], datatype: str, signature: Signature, name: str) -> Array:
    what = f"input {name!r}"
    if datatype == "BYTES" and signature.numeric:
        raise BadRequest(f"{what}: datatype BYTES but the model takes numbers")
    if datatype != "BYTES" and not isinstance(data, list | np.ndarray):
        raise BadRequest(f"{what}: data must be a list")
    values = _values(data, signature, what)
    expected = math.prod(shape)
    if values.size != expected:
        raise BadRequest(f"{what}: shape {shape} needs {expected} values, data has {values.size}")
    try:
        return values.reshape(shape)
    except ValueError:
        raise BadRequest(f"{what}: shape {shape} is too large") from None


def decode_oip(request: Any, signature: Signature) -> tuple[Array, dict[str, Any]]:
    """OIP inference request -> (rows, request fields: id, parameters, outputs)."""
    if not isinstance(request, dict):
        raise BadRequest("the request body must be a JSON object")
    inputs = request.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise BadRequest("the request needs a non-empty 'inputs' list")
    request_id = request.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise BadRequest("'id' must be a string")
    given = [_tensor(spec, i) for i, spec in enumerate(inputs)]
    if signature.tensors:
        return tensor_inputs.decode_oip(given, signature.tensors), request
    if len(given) == 1:
        rows = _single_input(given[0], signature)
    else:
        rows = _column_inputs(given, signature)
    return check_rows(rows, signature), request


def _single_input(tensor: tuple[str, list[int], str, Any], signature: Signature) -> Array:
    name, shape, datatype, data = tensor
    array = _shaped(data, shape, datatype, signature, name)
    n = signature.n_features
    if array.ndim == 2:
        return array
    if array.ndim == 1:
        if n == 1:
            return array.reshape(-1, 1)
        if array.shape[0] == n:
            return array.reshape(1, n)
    if n == 1 and array.ndim == 1:
        return array.reshape(-1, 1)
    raise BadRequest(
        f"input {name!r}: shape {shape} does not fit a model with {n} features; "
        f"send shape [rows, {n}]"
    )


def _column_inputs(tensors: list[tuple[str, list[int], str, Any]], signature: Signature) -> Array:
    by_name = {t[0]: t for t in tensors}
    if len(by_name) != len(tensors):
        raise BadRequest("two inputs have the same name")
    unknown = sorted(set(by_name) - set(signature.names))
    if unknown:
        raise BadRequest(
            f"unknown inputs {unknown}; the model's columns are {list(signature.names)}"
        )
    missing = [n for n in signature.names if n not in by_name]
    if missing:
        raise BadRequest(f"missing inputs for columns {missing}")
    columns = []
    for column in signature.columns:
        name, shape, datatype, data = by_name[column.name]
        if column.dtype.numeric and datatype == "BYTES":
            raise BadRequest(f"input {name!r}: datatype BYTES but the column is numeric")
        values = _shaped(data, shape, datatype, signature, name)
        if values.ndim == 2 and values.shape[1] == 1:
            values = values[:, 0]
        if values.ndim != 1:
            raise BadRequest(f"input {name!r}: a column input has shape [rows] or [rows, 1]")
        columns.append(values)
    if len({c.shape[0] for c in columns}) != 1:
        raise BadRequest("column inputs have different numbers of rows")
    return np.column_stack(columns) if signature.numeric else _stack_objects(columns)


def _stack_objects(columns: list[Array]) -> Array:
    rows = np.empty((columns[0].shape[0], len(columns)), dtype=object)
    for i, column in enumerate(columns):
        rows[:, i] = column
    return rows


def datatype_of(values: Array) -> str:
    return DType.of(values.dtype).value if values.dtype.kind != "U" else "BYTES"


def _plain(values: Array) -> list[JSON]:
    if values.dtype.kind in "OUS":
        return [v if isinstance(v, str | int | float | bool) or v is None
                else orjson.dumps(v, default=str).decode()
                for v in values.ravel().tolist()]  # fmt: skip
    plain: list[JSON] = values.ravel().tolist()
    return plain


def output_tensors(prediction: Prediction, wanted: list[str] | None) -> list[tuple[str, Array]]:
    """The prediction's output tensors by name (`predict`, and `predict_proba` when the model
    gives probabilities), only those `wanted` when the request names some."""
    tensors = [("predict", prediction.values)]
    if prediction.probabilities is not None:
        tensors.append(("predict_proba", prediction.probabilities))
    if wanted:
        known = {name for name, _ in tensors}
        unknown = [w for w in wanted if w not in known]
        if unknown:
            raise BadRequest(f"unknown outputs {unknown}; this model has {sorted(known)}")
        tensors = [t for t in tensors if t[0] in wanted]
    return tensors


def output_datatype(name: str, values: Array) -> str:
    return "FP64" if name == "predict_proba" else datatype_of(values)


def encode_oip_outputs(prediction: Prediction, wanted: list[str] | None) -> list[dict[str, JSON]]:
    return [
        {
            "name": name,
            "datatype": output_datatype(name, values),
            "shape": list(values.shape),
            "data": _plain(values),
        }
        for name, values in output_tensors(prediction, wanted)
    ]


def encode_oip_binary(
    prediction: Prediction, wanted: list[str] | None, *, every: bool, chosen: set[str]
) -> tuple[list[dict[str, JSON]], list[bytes]]:
    """Outputs with the binary tensor data extension: those chosen (or `every` one) as raw
    bytes in the returned buffers, in output order; the others as JSON `data`."""
    outputs: list[dict[str, JSON]] = []
    buffers: list[bytes] = []
    for name, values in output_tensors(prediction, wanted):
        datatype = output_datatype(name, values)
        output: dict[str, JSON] = {"name": name, "datatype": datatype, "shape": list(values.shape)}
        if every or name in chosen:
            raw = binary.output_bytes(values, datatype)
            output["parameters"] = {"binary_data_size": len(raw)}
            buffers.append(raw)
        else:
            output["data"] = _plain(values)
        outputs.append(output)
    return outputs, buffers


def requested_outputs(request: dict[str, Any]) -> list[str] | None:
    outputs = request.get("outputs")
    if outputs is None:
        return None
    if not isinstance(outputs, list) or not all(
        isinstance(o, dict) and isinstance(o.get("name"), str) for o in outputs
    ):
        raise BadRequest("'outputs' must be a list of objects with a 'name'")
    return [o["name"] for o in outputs]


# -- native JSON -------------------------------------------------------------------------------


def decode_native(request: Any, signature: Signature) -> Array:
    """`{"instances": [...]}` (rows or records) or `{"dataframe_split": {...}}` -> rows."""
    if not isinstance(request, dict):
        raise BadRequest("the request body must be a JSON object")
    if signature.tensors:
        return tensor_inputs.decode_native(request, signature.tensors)
    if "dataframe_split" in request:
        return check_rows(_split(request["dataframe_split"], signature), signature)
    instances = request.get("instances", request.get("dataframe_records", request.get("inputs")))
    if not isinstance(instances, list) or not instances:
        raise BadRequest(
            "expected a non-empty 'instances' list (rows or records) or a 'dataframe_split' object"
        )
    if all(isinstance(row, dict) for row in instances):
        return check_rows(_records(instances, signature), signature)
    if any(isinstance(row, dict) for row in instances):
        raise BadRequest("'instances' mixes records and rows")
    if signature.n_features == 1 and not isinstance(instances[0], list):
        instances = [[v] for v in instances]
    rows = _values(instances, signature, "instances")
    if rows.ndim == 1 and signature.n_features > 1:
        rows = rows.reshape(1, -1) if len(instances) == signature.n_features else rows
    return check_rows(rows, signature)


def _records(records: list[dict[str, Any]], signature: Signature) -> Array:
    names = signature.names
    for i, record in enumerate(records):
        missing = [n for n in names if n not in record]
        if missing:
            raise BadRequest(f"record {i} lacks columns {missing[:10]}")
    table = [[record[n] for n in names] for record in records]
    return _values(table, signature, "instances")


def _split(split: Any, signature: Signature) -> Array:
    if not isinstance(split, dict) or not isinstance(split.get("data"), list):
        raise BadRequest("'dataframe_split' must be an object with 'columns' and 'data'")
    data = split["data"]
    if not data:
        raise BadRequest("'dataframe_split.data' holds no rows")
    rows = _values(data, signature, "dataframe_split.data")
    columns = split.get("columns")
    if columns is None:
        return rows
    if not isinstance(columns, list) or rows.ndim != 2 or len(columns) != rows.shape[1]:
        raise BadRequest("'dataframe_split.columns' must name every column of 'data'")
    position = {str(c): i for i, c in enumerate(columns)}
    missing = [n for n in signature.names if n not in position]
    if missing:
        raise BadRequest(f"dataframe_split lacks columns {missing[:10]}")
    return rows[:, [position[n] for n in signature.names]]


def encode_native(prediction: Prediction) -> dict[str, JSON]:
    body: dict[str, JSON] = {"predictions": _plain_rows(prediction.values)}
    if prediction.probabilities is not None:
        body["probabilities"] = prediction.probabilities.tolist()
    return body


def encode_predictions(prediction: Prediction) -> dict[str, JSON]:
    """`{"predictions": [...]}` alone, as KServe v1 and MLflow's scoring server answer."""
    return {"predictions": _plain_rows(prediction.values)}


def _plain_rows(values: Array) -> list[JSON]:
    if values.dtype == object:
        return values.tolist()  # type: ignore[no-any-return]
    if values.ndim == 1:
        return _plain(values)
    return values.tolist()  # type: ignore[no-any-return]


# -- sticky routing keys ---------------------------------------------------------------------


def _scalar_key(value: Any) -> str | None:
    if isinstance(value, list):
        value = value[0] if value else None
    if value is None or isinstance(value, dict | list):
        return None
    return str(value)


def oip_field(request: Any, name: str) -> str | None:
    """A routing key from OIP `parameters`, or the first value of the input named `name`."""
    if not isinstance(request, dict):
        return None
    parameters = request.get("parameters")
    if isinstance(parameters, dict) and name in parameters:
        return _scalar_key(parameters[name])
    for tensor in request.get("inputs") or []:
        if isinstance(tensor, dict) and tensor.get("name") == name:
            data = tensor.get("data")
            if isinstance(data, np.ndarray):
                return _scalar_key(to_python(data.flat[0]) if data.size else None)
            while isinstance(data, list) and data and isinstance(data[0], list):
                data = data[0]
            return _scalar_key(data)
    return None


def native_field(request: Any, name: str) -> str | None:
    """A routing key from a top-level field, or the first record's column `name`."""
    if not isinstance(request, dict):
        return None
    if name in request:
        return _scalar_key(request[name])
    instances = request.get("instances")
    if isinstance(instances, list) and instances and isinstance(instances[0], dict):
        return _scalar_key(instances[0].get(name))
    return None
