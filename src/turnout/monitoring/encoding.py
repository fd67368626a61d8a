"""Prediction log rows as Arrow tables: what one answer records (`LogEntry`), and its
encoding into PREDICTION_SCHEMA, inputs, outputs and probabilities as JSON text.

Kept apart from the logger that buffers and writes them (`predlog`), so the writer process
(`logwriter`) can finish encoding without importing the logger.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain, groupby

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from turnout.monitoring.layout import PREDICTION_SCHEMA, TIMESTAMP
from turnout.registry import tensors
from turnout.registry.flavors import Prediction
from turnout.registry.signature import TensorSpec
from turnout.types import Array

_NUMPY = orjson.OPT_SERIALIZE_NUMPY
_MARKER = "\x00\x1f"
_SPLIT = ',"\\u0000\\u001f",'
"""How orjson writes `_MARKER` between two items of a list."""
_CHUNK_ROWS = 2_048
_CHUNK_VALUES = 1 << 16
"""Rows (or numbers) encoded per orjson call: bounds the size of one text and how long one
call holds the interpreter."""
_ANY = "any"
TENSOR_LOG_VALUES = 4_096
"""Tensor inputs of more values per row than this are not logged: the row's `inputs` says
so instead (an image of 3 x 224 x 224 would be a megabyte of JSON per prediction)."""


@dataclass(slots=True)
class LogEntry:
    """One answer (or failure) for the n rows of a request, as one role saw it.

    The logger keeps the arrays as given until they are written: callers hand them over and
    do not change them afterwards.
    """

    deployment: str
    revision: int
    model: str
    version: int
    role: str
    """champion | challenger | shadow | failover | fallback"""
    ids: list[str]
    """One prediction id per row."""
    ts: float
    """`time.time()` when the answer or failure was known."""
    latency_ms: float
    outcome: str
    """ok | error | timeout | fallback"""
    rows: Array | None = None
    """The decoded input rows (n x features); None when payloads are not logged."""
    prediction: Prediction | None = None
    """None when the step failed or payloads are not logged."""
    error: str | None = None
    tensors: tuple[TensorSpec, ...] = ()
    """A tensor model's inputs, packed side by side in `rows`: each row is then logged as
    the nested list of its one input, or an object of its inputs by name."""


def prediction_table(deployment: str, entries: Sequence[LogEntry]) -> pa.Table:
    """One row per prediction id, in PREDICTION_SCHEMA. Columns that are constant within an
    entry are built once per entry and repeated; payloads are encoded in a few large orjson
    calls rather than one per row."""
    entries = [entry for entry in entries if entry.ids]
    counts = np.fromiter((len(e.ids) for e in entries), dtype=np.int64, count=len(entries))
    total = int(counts.sum())
    index = None if total == len(entries) else np.repeat(np.arange(len(entries)), counts)

    def per_entry(values: Array | list[object], type_: pa.DataType) -> pa.Array:
        array = pa.array(values, type=type_)
        return array if index is None else array.take(index)

    ts_us = np.rint(np.fromiter((e.ts for e in entries), np.float64, len(entries)) * 1e6)
    columns = {
        "prediction_id": pa.array(list(chain.from_iterable(e.ids for e in entries)), pa.string()),
        "deployment": pa.repeat(pa.scalar(deployment, pa.string()), total),
        "revision": per_entry([e.revision for e in entries], pa.int32()),
        "model": per_entry([e.model for e in entries], pa.string()),
        "version": per_entry([e.version for e in entries], pa.int32()),
        "role": per_entry([e.role for e in entries], pa.string()),
        "ts": per_entry(ts_us.astype(np.int64), pa.int64()).cast(TIMESTAMP),
        "latency_ms": per_entry(
            np.fromiter((e.latency_ms for e in entries), np.float32, len(entries)), pa.float32()
        ),
        "outcome": per_entry([e.outcome for e in entries], pa.string()),
        "inputs": json_column([_inputs(e) for e in entries], counts, "input rows"),
        "output": json_column(
            [e.prediction.values if e.prediction else None for e in entries], counts, "values"
        ),
        "probabilities": probabilities_column(entries, counts),
        "error": per_entry([e.error for e in entries], pa.string()),
    }
    return pa.Table.from_pydict(columns, schema=PREDICTION_SCHEMA)


def fast_table(
    deployment: str, entries: Sequence[LogEntry], *, encode: bool = True
) -> pa.Table | None:
    """`prediction_table` for the common case, with no Python work per value: every entry's
    inputs are numeric rows of one width (or absent), its outputs one value per row, its
    probabilities one width. None when the entries are not like that.

    With `encode` False, numeric input rows stay numbers (a list<number> column) for
    `finalize` to turn into JSON text elsewhere (the writer process)."""
    entries = [entry for entry in entries if entry.ids]
    if any(entry.tensors for entry in entries):
        return None
    n = len(entries)
    ids = list(chain.from_iterable(entry.ids for entry in entries))
    counts = np.fromiter(map(len, (entry.ids for entry in entries)), np.int64, n)
    total = len(ids)
    index = None if total == n else np.repeat(np.arange(n), counts)
    uniform = _uniform_matrix([entry.rows for entry in entries], counts, total, 2)
    if uniform is None:
        return None
    inputs = _json_of(*uniform, total) if encode else _list_of(*uniform, total)
    predictions = [entry.prediction for entry in entries]
    values = [p.values if p is not None else None for p in predictions]
    output = _uniform_json(values, counts, total, 1)
    if output is None:  # labels that are not numbers: one orjson call for all of them
        output = json_column(values, counts, "values")
    probabilities = _uniform_probabilities(predictions, counts, total)
    if probabilities is None:
        return None

    def per_entry(values: list[object] | Array, type_: pa.DataType) -> pa.Array:
        array = pa.array(values, type=type_)
        return array if index is None else array.take(index)

    ts_us = np.rint(np.fromiter((e.ts for e in entries), np.float64, n) * 1e6).astype(np.int64)
    columns = {
        "prediction_id": _strings(ids),
        "deployment": pa.repeat(pa.scalar(deployment, pa.string()), total),
        "revision": per_entry([e.revision for e in entries], pa.int32()),
        "model": per_entry([e.model for e in entries], pa.string()),
        "version": per_entry([e.version for e in entries], pa.int32()),
        "role": per_entry([e.role for e in entries], pa.string()),
        "ts": per_entry(ts_us, pa.int64()).cast(TIMESTAMP),
        "latency_ms": per_entry(
            np.fromiter((e.latency_ms for e in entries), np.float32, n), pa.float32()
        ),
        "outcome": per_entry([e.outcome for e in entries], pa.string()),
        "inputs": inputs,
        "output": output,
        "probabilities": probabilities,
        "error": per_entry([e.error for e in entries], pa.string()),
    }
    schema = PREDICTION_SCHEMA
    if not encode:
        schema = schema.set(schema.get_field_index("inputs"), pa.field("inputs", inputs.type))
    return pa.Table.from_pydict(columns, schema=schema)


def finalize(table: pa.Table) -> pa.Table:
    """A table from `fast_table(encode=False)`, or several joined (rows of different widths),
    in PREDICTION_SCHEMA: numeric input rows become JSON text."""
    column = table.column("inputs")
    if not pa.types.is_list(column.type):
        return table
    rows = column.combine_chunks()
    valid = rows.is_valid().to_numpy(zero_copy_only=False)
    lengths = pc.list_value_length(rows).fill_null(0).to_numpy()
    widths = np.unique(lengths[valid])
    if len(widths) == 1:  # the usual case: the rows of one model
        matrix = rows.flatten().to_numpy(zero_copy_only=False).reshape(-1, int(widths[0]))
        encoded = _json_of(matrix, None if valid.all() else np.flatnonzero(valid), len(rows))
    else:
        encoded = _json_by_width(rows, valid, lengths, widths)
    index = table.schema.get_field_index("inputs")
    return table.set_column(index, "inputs", encoded).cast(PREDICTION_SCHEMA)


def _json_by_width(rows: pa.ListArray, valid: Array, lengths: Array, widths: Array) -> pa.Array:
    """JSON text of numeric rows of several widths (one orjson call per width), null where
    a row is absent."""
    values = rows.values.to_numpy(zero_copy_only=False)
    starts = rows.offsets.to_numpy()[:-1]
    order = np.full(len(rows), -1, dtype=np.int64)
    pieces: list[pa.Array] = []
    done = 0
    for width in widths.tolist():
        at = np.flatnonzero(valid & (lengths == width))
        pieces.append(_json_of(values[starts[at, None] + np.arange(width)], None, len(at)))
        order[at] = np.arange(done, done + len(at))
        done += len(at)
    if not pieces:
        return pa.nulls(len(rows), pa.string())
    return pa.concat_arrays(pieces).take(pa.array(order, mask=order < 0))


def _strings(texts: list[str]) -> pa.Array:
    """A string array from ASCII texts by joining them once (ids are ASCII); building it
    value by value costs about 20 times more."""
    data = "".join(texts).encode()
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, texts), np.int64, len(texts)), out=offsets[1:])
    if offsets[-1] != len(data):  # some text is not ASCII
        return pa.array(texts, pa.string())
    return pa.LargeStringArray.from_buffers(
        len(texts), pa.py_buffer(offsets), pa.py_buffer(data)
    ).cast(pa.string())


def _uniform_json(
    arrays: list[Array | None], counts: Array, total: int, ndim: int
) -> pa.Array | None:
    """JSON text per row when the present arrays are numeric, `ndim`-dimensional, of one
    width and one row per id; null rows where an array is absent. None otherwise."""
    uniform = _uniform_matrix(arrays, counts, total, ndim)
    return None if uniform is None else _json_of(*uniform, total)


def _uniform_matrix(
    arrays: list[Array | None], counts: Array, total: int, ndim: int
) -> tuple[Array | None, Array | None] | None:
    """(the present arrays joined, the row positions they fill or None for all rows) when
    they are numeric, `ndim`-dimensional, of one width and one row per id; (None, None)
    when every array is absent; None otherwise."""
    present = [array for array in arrays if array is not None]
    if not present:
        return None, None
    try:
        matrix = np.concatenate(present)
    except ValueError:
        return None
    if matrix.ndim != ndim or matrix.dtype.kind not in "biuf":
        return None
    if not matrix.dtype.isnative:
        matrix = matrix.astype(matrix.dtype.newbyteorder("="))
    if len(present) == len(arrays):
        return (matrix, None) if len(matrix) == total else None
    mask = np.fromiter((a is not None for a in arrays), np.bool_, len(arrays))
    positions = np.flatnonzero(np.repeat(mask, counts))
    return (matrix, positions) if len(matrix) == len(positions) else None


def _json_of(matrix: Array | None, positions: Array | None, total: int) -> pa.Array:
    if matrix is None:
        return pa.nulls(total, pa.string())
    step = max(1, _CHUNK_VALUES // max(1, matrix[:1].size))
    pieces = [_encode_numeric(matrix[at : at + step]) for at in range(0, len(matrix), step)]
    encoded = pa.concat_arrays(pieces) if pieces else pa.array([], pa.string())
    return encoded if positions is None else _spread(encoded, positions, total)


def _list_of(matrix: Array | None, positions: Array | None, total: int) -> pa.Array:
    """Rows of numbers as a list column (no text yet), null where absent."""
    if matrix is None:
        return pa.nulls(total, pa.list_(pa.float64()))
    width = matrix.shape[1]
    flat = pa.array(matrix.reshape(-1))
    if positions is None:
        offsets = np.arange(0, total * width + 1, width, dtype=np.int32)
        return pa.ListArray.from_arrays(pa.array(offsets), flat)
    rows = np.zeros(total, dtype=np.bool_)
    rows[positions] = True
    offsets = np.zeros(total + 1, dtype=np.int32)
    np.cumsum(rows * width, out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), flat, mask=pa.array(~rows))


def _spread(encoded: pa.Array, positions: Array, total: int) -> pa.Array:
    """`encoded` placed at `positions` of a column of `total` rows, null elsewhere."""
    index = np.full(total, -1, dtype=np.int64)
    index[positions] = np.arange(len(positions))
    return encoded.take(pa.array(index, mask=index < 0))


def _uniform_probabilities(
    predictions: list[Prediction | None], counts: Array, total: int
) -> pa.Array | None:
    """The list<double> column when the entries that have probabilities all have one row
    per id and one width; null where an entry has none. None otherwise."""
    matrices = [p.probabilities if p is not None else None for p in predictions]
    present = [m for m in matrices if m is not None]
    if not present:
        return pa.nulls(total, pa.list_(pa.float64()))
    try:
        values = np.concatenate(present).astype(np.float64, copy=False)
    except ValueError:
        return None
    if values.ndim != 2:
        return None
    width = values.shape[1]
    if len(present) == len(matrices):
        if len(values) != total:
            return None
        offsets = np.arange(0, total * width + 1, width, dtype=np.int32)
        return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values.reshape(-1)))
    rows = np.repeat(
        np.fromiter((m is not None for m in matrices), np.bool_, len(matrices)), counts
    )
    if len(values) != int(rows.sum()):
        return None
    offsets = np.zeros(total + 1, dtype=np.int32)
    np.cumsum(rows * width, out=offsets[1:])
    return pa.ListArray.from_arrays(
        pa.array(offsets), pa.array(values.reshape(-1)), mask=pa.array(~rows)
    )


def json_column(arrays: Sequence[Array | None], counts: Array, what: str) -> pa.Array:
    """Each row of each array as JSON text (a row of features becomes an array, a value a
    scalar; NaN becomes null); null for every row of an array that is None.

    Consecutive numeric arrays of one dtype and shape are joined and encoded by one orjson
    call, so many one-row requests cost about what one large request costs."""
    sizes = counts.tolist()
    checked = [_checked(array, n, what) for array, n in zip(arrays, sizes, strict=True)]
    pieces: list[pa.Array] = []
    for key, group in groupby(zip(checked, sizes, strict=True), key=lambda pair: _run_key(pair[0])):
        run = list(group)
        if key is None:
            pieces.append(pa.nulls(sum(n for _, n in run), pa.string()))
        elif key == _ANY:
            items = [row for array, _ in run if array is not None for row in array]
            pieces.extend(
                _encode(items[at : at + _CHUNK_ROWS]) for at in range(0, len(items), _CHUNK_ROWS)
            )
        else:
            parts = [array for array, _ in run if array is not None]
            matrix = np.concatenate(parts) if len(parts) > 1 else np.ascontiguousarray(parts[0])
            step = max(1, _CHUNK_VALUES // max(1, matrix[:1].size))
            pieces.extend(
                _encode_numeric(matrix[at : at + step]) for at in range(0, len(matrix), step)
            )
    return pa.concat_arrays(pieces) if pieces else pa.array([], pa.string())


def _inputs(entry: LogEntry) -> Array | None:
    """What the log keeps of an entry's input rows (tensor inputs in their own shapes)."""
    rows = entry.rows
    if rows is None or not entry.tensors:
        return rows
    specs = entry.tensors
    logged = np.empty(len(rows), dtype=object)
    values = tensors.values_per_row(specs)
    if values > TENSOR_LOG_VALUES:
        note = {
            "omitted": f"tensor inputs of {values} values per row; the log keeps "
            f"those of up to {TENSOR_LOG_VALUES}"
        }
        for i in range(len(rows)):
            logged[i] = note
        return logged
    arrays = tensors.unpack(rows, specs)
    if len(specs) == 1:
        return arrays[0]
    for i in range(len(rows)):
        logged[i] = {spec.name: array[i] for spec, array in zip(specs, arrays, strict=True)}
    return logged


def _checked(array: Array | None, n: int, what: str) -> Array | None:
    if array is None:
        return None
    rows = np.asarray(array)
    if rows.ndim == 0 or len(rows) != n:
        raise ValueError(f"{len(rows) if rows.ndim else 'no'} {what} for {n} prediction ids")
    if not rows.dtype.isnative:  # orjson reads numpy memory as native numbers
        rows = rows.astype(rows.dtype.newbyteorder("="))
    return rows


def _run_key(rows: Array | None) -> object:
    """Arrays with equal keys are encoded together: numeric ones of one dtype and shape."""
    if rows is None:
        return None
    if rows.dtype.kind in "biuf" and rows.ndim <= 2:
        return rows.dtype, rows.shape[1:]
    return _ANY


def _encode_numeric(matrix: Array) -> pa.Array:
    """Numeric values, or rows of them, from one orjson call over the whole block. Numbers
    hold no brackets or commas, so the text splits cleanly between values or rows."""
    if not len(matrix):
        return pa.array([], pa.string())
    text = orjson.dumps(matrix, option=_NUMPY)
    if matrix.ndim == 1:  # [v,v,v]
        return _split(text, 1, ",")
    return pc.binary_join_element_wise("[", _split(text, 2, "],["), "]", "")  # [[v,v],[v,v]]


def _encode(items: list[object]) -> pa.Array:
    """The JSON text of each item, from one orjson call: items are written with a marker
    string between them and split on it. A marker found inside the data itself changes the
    number of parts, and then each item is encoded alone."""
    spaced: list[object] = [_MARKER] * (2 * len(items) - 1)
    spaced[::2] = items
    parts = _split(orjson.dumps(spaced, default=_fallback, option=_NUMPY), 1, _SPLIT)
    if len(parts) == len(items):
        return parts
    return pa.array(
        [orjson.dumps(item, default=_fallback, option=_NUMPY) for item in items], pa.string()
    )


def _split(text: bytes, margin: int, separator: str) -> pa.Array:
    """The pieces of `text`, less `margin` bytes at either end, between `separator`s; the
    text is not copied."""
    bounds = np.array([margin, len(text) - margin], dtype=np.int32)
    whole = pa.StringArray.from_buffers(1, pa.py_buffer(bounds), pa.py_buffer(text))
    return pc.split_pattern(whole, separator).flatten()


def _fallback(value: object) -> object:
    """What orjson cannot encode itself: numpy values by their Python equivalents, anything
    else as its text."""
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    return str(value)


def probabilities_column(entries: Sequence[LogEntry], counts: Array) -> pa.Array:
    """A list<double> column built from each entry's n x k matrix in one pass: null where an
    entry has no probabilities."""
    matrices = [
        _matrix(entry.prediction.probabilities, n)
        if entry.prediction is not None and entry.prediction.probabilities is not None
        else None
        for entry, n in zip(entries, counts.tolist(), strict=True)
    ]
    present = np.fromiter((m is not None for m in matrices), np.bool_, len(matrices))
    widths = np.fromiter(
        (0 if m is None else m.shape[1] for m in matrices), np.int64, len(matrices)
    )
    offsets = np.zeros(int(counts.sum()) + 1, dtype=np.int32)
    np.cumsum(np.repeat(widths, counts), out=offsets[1:])
    chunks = [m.reshape(-1) for m in matrices if m is not None]
    values = np.concatenate(chunks) if chunks else np.empty(0, dtype=np.float64)
    return pa.ListArray.from_arrays(
        pa.array(offsets, pa.int32()),
        pa.array(values, pa.float64()),
        mask=pa.array(~np.repeat(present, counts)),
    )


def _matrix(probabilities: Array, n: int) -> Array:
    matrix = np.asarray(probabilities, dtype=np.float64)
    return matrix if matrix.ndim == 2 and len(matrix) == n else matrix.reshape(n, -1)
