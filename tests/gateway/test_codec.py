"""Unit tests of the request decoders and response encoders in `turnout.gateway.codec`."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from turnout.errors import BadRequest
from turnout.gateway.codec import (
    OIP_DATATYPES,
    decode_native,
    decode_oip,
    encode_oip_outputs,
    requested_outputs,
)
from turnout.registry.flavors.base import Prediction
from turnout.registry.signature import Column, DType, Signature, unnamed_columns

WIDE = Signature(columns=unnamed_columns(30), named=False)
"""Thirty unnamed FP64 features, like the reference breast-cancer model."""

NAMES = ("age", "income", "score")
NAMED = Signature(columns=tuple(Column(n, DType.FP64) for n in NAMES), named=True)
NAMED_MISSING_OK = Signature(
    columns=tuple(Column(n, DType.FP64) for n in NAMES), named=True, allow_missing=True
)
MIXED = Signature(columns=(Column("age", DType.FP64), Column("city", DType.BYTES)), named=True)


def tensor(name: str, shape: list[Any], data: Any, datatype: str = "FP64") -> dict[str, Any]:
    return {"name": name, "shape": shape, "datatype": datatype, "data": data}


def oip(*inputs: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"inputs": list(inputs), **fields}


def matrix(n: int, k: int = 30) -> np.ndarray:
    return np.arange(n * k, dtype=np.float64).reshape(n, k) / 7.0


def named_columns(rows: np.ndarray, order: tuple[str, ...] = NAMES) -> list[dict[str, Any]]:
    return [tensor(name, [len(rows)], rows[:, NAMES.index(name)].tolist()) for name in order]


# -- OIP: one tensor holding every column ---------------------------------------------------


def test_oip_single_input_flat_data() -> None:
    x = matrix(4)
    rows, request = decode_oip(oip(tensor("input-0", [4, 30], x.ravel().tolist())), WIDE)
    assert rows.dtype == np.float64
    np.testing.assert_array_equal(rows, x)
    assert request["inputs"][0]["name"] == "input-0"


def test_oip_single_input_nested_data() -> None:
    x = matrix(3)
    rows, _ = decode_oip(oip(tensor("input-0", [3, 30], x.tolist())), WIDE)
    np.testing.assert_array_equal(rows, x)


@pytest.mark.parametrize("name", ["input-0", "x", "features", "anything at all"])
def test_oip_single_input_under_any_name(name: str) -> None:
    x = matrix(2)
    rows, _ = decode_oip(oip(tensor(name, [2, 30], x.ravel().tolist())), WIDE)
    np.testing.assert_array_equal(rows, x)


def test_oip_one_dimensional_shape_is_one_row() -> None:
    x = matrix(1)
    rows, _ = decode_oip(oip(tensor("input-0", [30], x.ravel().tolist())), WIDE)
    assert rows.shape == (1, 30)
    np.testing.assert_array_equal(rows, x)


def test_oip_single_input_for_a_one_feature_model_is_a_column() -> None:
    single = Signature(columns=unnamed_columns(1), named=False)
    rows, _ = decode_oip(oip(tensor("input-0", [3], [1.0, 2.0, 3.0])), single)
    np.testing.assert_array_equal(rows, [[1.0], [2.0], [3.0]])


def test_oip_request_fields_come_back() -> None:
    request = oip(
        tensor("input-0", [1, 30], matrix(1).ravel().tolist()),
        id="req-1",
        parameters={"a": 1},
        outputs=[{"name": "predict"}],
    )
    _, fields = decode_oip(request, WIDE)
    assert fields["id"] == "req-1"
    assert fields["parameters"] == {"a": 1}
    assert requested_outputs(fields) == ["predict"]


# -- OIP: one tensor per named column -------------------------------------------------------


@pytest.mark.parametrize("order", [NAMES, tuple(reversed(NAMES)), ("score", "age", "income")])
def test_oip_column_inputs_are_put_in_signature_order(order: tuple[str, ...]) -> None:
    x = matrix(5, 3)
    rows, _ = decode_oip(oip(*named_columns(x, order)), NAMED)
    np.testing.assert_array_equal(rows, x)


def test_oip_column_inputs_with_shape_rows_by_one() -> None:
    x = matrix(4, 3)
    inputs = [tensor(n, [4, 1], [[v] for v in x[:, i].tolist()]) for i, n in enumerate(NAMES)]
    rows, _ = decode_oip(oip(*reversed(inputs)), NAMED)
    np.testing.assert_array_equal(rows, x)


def test_oip_column_inputs_missing_a_column() -> None:
    inputs = named_columns(matrix(2, 3))[:2]
    with pytest.raises(BadRequest, match=r"missing inputs for columns \['score'\]"):
        decode_oip(oip(*inputs), NAMED)


def test_oip_column_inputs_unknown_column() -> None:
    inputs = [*named_columns(matrix(2, 3)), tensor("height", [2], [1.0, 2.0])]
    with pytest.raises(BadRequest, match=r"unknown inputs \['height'\]"):
        decode_oip(oip(*inputs), NAMED)


def test_oip_column_inputs_duplicate_names() -> None:
    inputs = [*named_columns(matrix(2, 3)), tensor("age", [2], [1.0, 2.0])]
    with pytest.raises(BadRequest, match="same name"):
        decode_oip(oip(*inputs), NAMED)


def test_oip_column_inputs_with_different_row_counts() -> None:
    inputs = named_columns(matrix(2, 3))
    inputs[1] = tensor("income", [3], [1.0, 2.0, 3.0])
    with pytest.raises(BadRequest, match="different numbers of rows"):
        decode_oip(oip(*inputs), NAMED)


def test_oip_column_input_must_be_one_column() -> None:
    inputs = named_columns(matrix(2, 3))
    inputs[0] = tensor("age", [1, 2], [1.0, 2.0])
    with pytest.raises(BadRequest, match=r"'age'.*shape \[rows\] or \[rows, 1\]"):
        decode_oip(oip(*inputs), NAMED)


# -- OIP: bad tensors ---------------------------------------------------------------------


def test_oip_element_count_must_match_shape() -> None:
    data = matrix(2).ravel().tolist()[:-1]
    with pytest.raises(BadRequest, match=r"shape \[2, 30\] needs 60 values, data has 59"):
        decode_oip(oip(tensor("input-0", [2, 30], data)), WIDE)


def test_oip_shape_that_does_not_fit_the_model() -> None:
    with pytest.raises(BadRequest, match="expected 30 features per row, got 15"):
        decode_oip(oip(tensor("input-0", [2, 15], matrix(1).ravel().tolist())), WIDE)


def test_oip_three_dimensional_shape() -> None:
    with pytest.raises(BadRequest, match=r"shape \[1, 1, 30\] does not fit.*\[rows, 30\]"):
        decode_oip(oip(tensor("input-0", [1, 1, 30], matrix(1).ravel().tolist())), WIDE)


def test_oip_one_dimensional_shape_with_wrong_length() -> None:
    with pytest.raises(BadRequest, match=r"shape \[29\] does not fit a model with 30 features"):
        decode_oip(oip(tensor("input-0", [29], [0.0] * 29)), WIDE)


@pytest.mark.parametrize(
    "shape", [[-1, 30], [1.0, 30], ["1", 30], [True, 30], [None], "1,30", None, {"rows": 1}]
)
def test_oip_shape_must_be_non_negative_integers(shape: Any) -> None:
    with pytest.raises(BadRequest, match="shape must be a list of non-negative integers"):
        decode_oip(oip(tensor("input-0", shape, [0.0] * 30)), WIDE)


def test_oip_absurdly_large_shape() -> None:
    with pytest.raises(BadRequest, match="shape"):
        decode_oip(oip(tensor("input-0", [0, 10**30], [])), WIDE)


@pytest.mark.parametrize("datatype", ["FLOAT64", "fp64", "", None, 64, ["FP64"], {"FP64": 1}])
def test_oip_unknown_datatype(datatype: Any) -> None:
    with pytest.raises(BadRequest, match="unknown datatype"):
        decode_oip(oip(tensor("input-0", [1, 30], [0.0] * 30, datatype)), WIDE)


@pytest.mark.parametrize("bad", ["1.5", "abc", ""])
def test_oip_strings_in_a_numeric_tensor(bad: str) -> None:
    data: list[Any] = [0.0] * 30
    data[7] = bad
    with pytest.raises(BadRequest, match="expected numbers, got str"):
        decode_oip(oip(tensor("input-0", [1, 30], data)), WIDE)


def test_oip_objects_in_a_numeric_tensor() -> None:
    data: list[Any] = [0.0] * 30
    data[0] = {"v": 1}
    with pytest.raises(BadRequest, match="expected numbers, got dict"):
        decode_oip(oip(tensor("input-0", [1, 30], data)), WIDE)


def test_oip_bytes_datatype_for_a_numeric_model() -> None:
    with pytest.raises(BadRequest, match="datatype BYTES but the model takes numbers"):
        decode_oip(oip(tensor("input-0", [1, 30], ["1"] * 30, "BYTES")), WIDE)


def test_oip_bytes_datatype_for_a_numeric_column() -> None:
    inputs = [tensor("age", [1], ["40"], "BYTES"), tensor("city", [1], ["Oslo"], "BYTES")]
    with pytest.raises(BadRequest, match="'age': datatype BYTES but the column is numeric"):
        decode_oip(oip(*inputs), MIXED)


def test_oip_ragged_nested_data() -> None:
    data = [[0.0] * 30, [0.0] * 29]
    with pytest.raises(BadRequest, match="not a regular array"):
        decode_oip(oip(tensor("input-0", [2, 30], data)), WIDE)


def test_oip_data_must_be_a_list() -> None:
    with pytest.raises(BadRequest, match="data must be a list"):
        decode_oip(oip(tensor("input-0", [1, 1], 1.0)), WIDE)


def test_oip_data_is_required() -> None:
    spec = {"name": "input-0", "shape": [1, 30], "datatype": "FP64"}
    with pytest.raises(BadRequest, match="has no data"):
        decode_oip(oip(spec), WIDE)


def test_oip_input_needs_a_name() -> None:
    spec = {"shape": [1, 30], "datatype": "FP64", "data": [0.0] * 30}
    with pytest.raises(BadRequest, match=r"inputs\[0\]\.name must be a string"):
        decode_oip(oip(spec), WIDE)


def test_oip_input_must_be_an_object() -> None:
    with pytest.raises(BadRequest, match=r"inputs\[1\] must be an object"):
        decode_oip({"inputs": [tensor("age", [1], [1.0]), [1.0]]}, NAMED)


@pytest.mark.parametrize("request_body", [{"inputs": []}, {}, {"instances": [[1.0] * 30]}])
def test_oip_empty_or_absent_inputs(request_body: dict[str, Any]) -> None:
    with pytest.raises(BadRequest, match="non-empty 'inputs' list"):
        decode_oip(request_body, WIDE)


@pytest.mark.parametrize("inputs", [{"name": "input-0"}, "input-0", 3, None])
def test_oip_inputs_must_be_a_list(inputs: Any) -> None:
    with pytest.raises(BadRequest, match="'inputs' list"):
        decode_oip({"inputs": inputs}, WIDE)


@pytest.mark.parametrize("body", [[], [{"inputs": []}], "inputs", 1, None, True])
def test_oip_body_must_be_an_object(body: Any) -> None:
    with pytest.raises(BadRequest, match="must be a JSON object"):
        decode_oip(body, WIDE)


@pytest.mark.parametrize("request_id", [1, 1.5, ["a"], {"a": 1}, True])
def test_oip_id_must_be_a_string(request_id: Any) -> None:
    request = oip(tensor("input-0", [1, 30], [0.0] * 30), id=request_id)
    with pytest.raises(BadRequest, match="'id' must be a string"):
        decode_oip(request, WIDE)


def test_oip_empty_batch() -> None:
    with pytest.raises(BadRequest, match="no rows"):
        decode_oip(oip(tensor("input-0", [0, 30], [])), WIDE)


def test_oip_null_refused_when_model_does_not_allow_missing() -> None:
    inputs = named_columns(matrix(3, 3))
    inputs[1]["data"][2] = None
    with pytest.raises(BadRequest, match=r"missing value.*row 2, column 'income'"):
        decode_oip(oip(*inputs), NAMED)


def test_oip_null_in_single_input_refused() -> None:
    data: list[Any] = [0.0] * 30
    data[1] = None
    with pytest.raises(BadRequest, match=r"missing value.*row 0, column 'f1'"):
        decode_oip(oip(tensor("input-0", [1, 30], data)), WIDE)


def test_oip_null_becomes_nan_when_model_allows_missing() -> None:
    inputs = named_columns(matrix(3, 3))
    inputs[1]["data"][2] = None
    rows, _ = decode_oip(oip(*inputs), NAMED_MISSING_OK)
    assert math.isnan(rows[2, 1])
    assert np.isnan(rows).sum() == 1
    assert rows[2, 0] == matrix(3, 3)[2, 0]


def test_oip_bools_are_numbers() -> None:
    rows, _ = decode_oip(oip(tensor("input-0", [1, 3], [True, False, 2.5])), NAMED)
    np.testing.assert_array_equal(rows, [[1.0, 0.0, 2.5]])
    rows, _ = decode_oip(oip(tensor("input-0", [1, 3], [True, False, True], "BOOL")), NAMED)
    np.testing.assert_array_equal(rows, [[1.0, 0.0, 1.0]])


def test_oip_ints_are_numbers() -> None:
    rows, _ = decode_oip(oip(tensor("input-0", [1, 3], [1, 2, 3], "INT64")), NAMED)
    assert rows.dtype == np.float64
    np.testing.assert_array_equal(rows, [[1.0, 2.0, 3.0]])


def test_oip_number_too_large_for_a_float() -> None:
    with pytest.raises(BadRequest, match="too large"):
        decode_oip(oip(tensor("input-0", [1, 3], [1, 2, 10**400])), NAMED)


def test_oip_mixed_model_keeps_text() -> None:
    inputs = [tensor("city", [2], ["Oslo", "Lima"], "BYTES"), tensor("age", [2], [40, 31])]
    rows, _ = decode_oip(oip(*inputs), MIXED)
    assert rows.tolist() == [[40, "Oslo"], [31, "Lima"]]


def test_oip_mixed_model_refuses_nested_cells() -> None:
    inputs = [tensor("city", [2], ["Oslo", ["Lima"]], "BYTES"), tensor("age", [2], [40, 31])]
    with pytest.raises(BadRequest, match="'city': expected one value per cell, got list"):
        decode_oip(oip(*inputs), MIXED)
    with pytest.raises(BadRequest, match="expected one value per cell, got dict"):
        decode_native({"instances": [{"age": 40, "city": {"name": "Oslo"}}]}, MIXED)


# -- native JSON ----------------------------------------------------------------------------


def test_native_instances_as_rows() -> None:
    x = matrix(3, 3)
    np.testing.assert_array_equal(decode_native({"instances": x.tolist()}, NAMED), x)


def test_native_single_flat_instance_is_one_row() -> None:
    rows = decode_native({"instances": [1.0, 2.0, 3.0]}, NAMED)
    np.testing.assert_array_equal(rows, [[1.0, 2.0, 3.0]])


def test_native_instances_as_records() -> None:
    records = [
        {"score": 3.0, "age": 1.0, "income": 2.0, "ignored": "yes"},
        {"income": 5.0, "age": 4.0, "score": 6.0},
    ]
    rows = decode_native({"instances": records}, NAMED)
    np.testing.assert_array_equal(rows, [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])


def test_native_dataframe_records() -> None:
    rows = decode_native({"dataframe_records": [{"age": 1, "income": 2, "score": 3}]}, NAMED)
    np.testing.assert_array_equal(rows, [[1.0, 2.0, 3.0]])


def test_native_record_missing_a_key() -> None:
    records = [{"age": 1.0, "income": 2.0, "score": 3.0}, {"age": 1.0, "score": 3.0}]
    with pytest.raises(BadRequest, match=r"record 1 lacks columns \['income'\]"):
        decode_native({"instances": records}, NAMED)


def test_native_dataframe_split_reorders_columns() -> None:
    split = {"columns": ["score", "age", "income"], "data": [[3.0, 1.0, 2.0], [6.0, 4.0, 5.0]]}
    rows = decode_native({"dataframe_split": split}, NAMED)
    np.testing.assert_array_equal(rows, [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])


def test_native_dataframe_split_without_columns_keeps_order() -> None:
    rows = decode_native({"dataframe_split": {"data": [[1.0, 2.0, 3.0]]}}, NAMED)
    np.testing.assert_array_equal(rows, [[1.0, 2.0, 3.0]])


def test_native_dataframe_split_missing_a_column() -> None:
    split = {"columns": ["score", "age", "height"], "data": [[3.0, 1.0, 2.0]]}
    with pytest.raises(BadRequest, match=r"dataframe_split lacks columns \['income'\]"):
        decode_native({"dataframe_split": split}, NAMED)


def test_native_dataframe_split_columns_must_match_data() -> None:
    split = {"columns": ["age", "income"], "data": [[3.0, 1.0, 2.0]]}
    with pytest.raises(BadRequest, match="must name every column"):
        decode_native({"dataframe_split": split}, NAMED)


@pytest.mark.parametrize("split", [[], "x", {"columns": ["age"]}, {"data": "x"}])
def test_native_dataframe_split_must_be_an_object_with_data(split: Any) -> None:
    with pytest.raises(BadRequest, match="'dataframe_split' must be an object"):
        decode_native({"dataframe_split": split}, NAMED)


def test_native_dataframe_split_with_no_rows() -> None:
    with pytest.raises(BadRequest, match="holds no rows"):
        decode_native({"dataframe_split": {"columns": list(NAMES), "data": []}}, NAMED)


@pytest.mark.parametrize(
    ("instances", "got"),
    [([[1.0, 2.0], [3.0, 4.0]], "got 2"), ([[1.0, 2.0, 3.0, 4.0]], "got 4"), ([1.0, 2.0], "got")],
)
def test_native_wrong_number_of_features(instances: list[Any], got: str) -> None:
    with pytest.raises(BadRequest, match=f"expected 3 features per row, {got}"):
        decode_native({"instances": instances}, NAMED)


@pytest.mark.parametrize("body", [{"instances": []}, {"instances": None}, {}, {"instances": 3}])
def test_native_empty_or_absent_instances(body: dict[str, Any]) -> None:
    with pytest.raises(BadRequest, match="non-empty 'instances' list"):
        decode_native(body, NAMED)


def test_native_mixed_records_and_rows() -> None:
    instances = [{"age": 1.0, "income": 2.0, "score": 3.0}, [1.0, 2.0, 3.0]]
    with pytest.raises(BadRequest, match="mixes records and rows"):
        decode_native({"instances": instances}, NAMED)


@pytest.mark.parametrize("body", [[[1.0, 2.0, 3.0]], "instances", None, 3])
def test_native_body_must_be_an_object(body: Any) -> None:
    with pytest.raises(BadRequest, match="must be a JSON object"):
        decode_native(body, NAMED)


def test_native_strings_in_a_numeric_row() -> None:
    with pytest.raises(BadRequest, match="expected numbers, got str"):
        decode_native({"instances": [[1.0, "two", 3.0]]}, NAMED)


def test_native_null_refused_or_nan() -> None:
    body = {"instances": [[1.0, None, 3.0]]}
    with pytest.raises(BadRequest, match=r"missing value.*column 'income'"):
        decode_native(body, NAMED)
    rows = decode_native(body, NAMED_MISSING_OK)
    assert math.isnan(rows[0, 1])


def test_native_one_feature_model_takes_a_flat_list() -> None:
    single = Signature(columns=unnamed_columns(1), named=False)
    np.testing.assert_array_equal(decode_native({"instances": [1, 2]}, single), [[1.0], [2.0]])


# -- encoding outputs -----------------------------------------------------------------------


def test_encode_int_labels_and_probabilities() -> None:
    probs = np.array([[0.25, 0.75], [0.9, 0.1], [0.5, 0.5]])
    outputs = encode_oip_outputs(Prediction(np.array([1, 0, 0]), probs), None)
    assert outputs == [
        {"name": "predict", "datatype": "INT64", "shape": [3], "data": [1, 0, 0]},
        {
            "name": "predict_proba",
            "datatype": "FP64",
            "shape": [3, 2],
            "data": [0.25, 0.75, 0.9, 0.1, 0.5, 0.5],
        },
    ]


@pytest.mark.parametrize("labels", [np.array(["cat", "dog"]), np.array(["cat", "dog"], object)])
def test_encode_string_labels_are_bytes(labels: np.ndarray) -> None:
    (output,) = encode_oip_outputs(Prediction(labels), None)
    assert output == {"name": "predict", "datatype": "BYTES", "shape": [2], "data": ["cat", "dog"]}


def test_encode_float_values() -> None:
    (output,) = encode_oip_outputs(Prediction(np.array([0.5, 1.5])), None)
    assert output == {"name": "predict", "datatype": "FP64", "shape": [2], "data": [0.5, 1.5]}


def test_encode_only_the_requested_outputs() -> None:
    prediction = Prediction(np.array([1]), np.array([[0.4, 0.6]]))
    outputs = encode_oip_outputs(prediction, ["predict_proba"])
    assert [o["name"] for o in outputs] == ["predict_proba"]


def test_encode_unknown_requested_output() -> None:
    prediction = Prediction(np.array([1]), np.array([[0.4, 0.6]]))
    with pytest.raises(BadRequest, match=r"unknown outputs \['logits'\]"):
        encode_oip_outputs(prediction, ["predict", "logits"])


def test_encode_probabilities_not_offered_without_them() -> None:
    with pytest.raises(BadRequest, match=r"unknown outputs \['predict_proba'\]"):
        encode_oip_outputs(Prediction(np.array([1.0])), ["predict_proba"])


@pytest.mark.parametrize("outputs", ["predict", [{"id": "predict"}], ["predict"], {"a": 1}])
def test_requested_outputs_must_be_named_objects(outputs: Any) -> None:
    with pytest.raises(BadRequest, match="'outputs' must be a list"):
        requested_outputs({"outputs": outputs})


# -- properties -----------------------------------------------------------------------------

finite = st.floats(allow_nan=False, allow_infinity=False)
matrices = st.integers(1, 6).flatmap(
    lambda k: hnp.arrays(np.float64, st.tuples(st.integers(1, 20), st.just(k)), elements=finite)
)


def through_json(body: Any) -> Any:
    return orjson.loads(orjson.dumps(body))


@given(x=matrices, nested=st.booleans())
def test_oip_round_trip_is_exact(x: np.ndarray, nested: bool) -> None:
    signature = Signature(columns=unnamed_columns(x.shape[1]), named=False)
    data = x.tolist() if nested else x.ravel().tolist()
    body = through_json(oip(tensor("input-0", list(x.shape), data), id="p"))
    rows, _ = decode_oip(body, signature)
    assert rows.dtype == np.float64
    assert rows.shape == x.shape
    np.testing.assert_array_equal(rows, x)


@given(x=matrices)
def test_native_round_trip_is_exact(x: np.ndarray) -> None:
    signature = Signature(columns=unnamed_columns(x.shape[1]), named=True)
    names = signature.names
    records = [dict(zip(names, row, strict=True)) for row in x.tolist()]
    for body in ({"instances": x.tolist()}, {"instances": records}):
        np.testing.assert_array_equal(decode_native(through_json(body), signature), x)


KEYS = ("inputs", "id", "outputs", "name", "shape", "datatype", "data", "parameters")
KEYS += ("instances", "dataframe_split", "dataframe_records", "columns", *NAMES, "city")
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6)
    | st.sampled_from([*sorted(OIP_DATATYPES), *NAMES, "input-0", "city"])
)
junk = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=4), inner, max_size=5)
    ),
    max_leaves=30,
)
value = st.one_of(finite, st.integers(-3, 3), st.none(), st.booleans(), st.text(max_size=3))
cell = value | junk
cells = st.lists(cell, max_size=6)
tensor_names = st.sampled_from([*NAMES, "input-0", "city"])


@st.composite
def plausible_tensors(draw: st.DrawFn) -> dict[str, Any]:
    """Tensors whose data usually fits their shape, so decoding gets past the first checks."""
    shape = draw(st.lists(st.integers(0, 4), min_size=1, max_size=3))
    flat = draw(st.lists(value, min_size=math.prod(shape), max_size=math.prod(shape)))
    data = np.array(flat, dtype=object).reshape(shape).tolist() if draw(st.booleans()) else flat
    datatype = draw(st.sampled_from(["FP64", "FP64", "INT64", "BOOL", "BYTES"]))
    return tensor(draw(tensor_names | junk), shape, data, datatype)


tensors = st.fixed_dictionaries(
    {
        "name": tensor_names | junk,
        "shape": st.lists(st.integers(0, 4), max_size=3) | junk,
        "datatype": st.sampled_from(sorted(OIP_DATATYPES)) | junk,
        "data": cells | st.lists(cells, max_size=4) | junk,
    }
)
oip_requests = junk | st.fixed_dictionaries(
    {"inputs": st.lists(plausible_tensors() | tensors, max_size=4) | junk},
    optional={"id": st.text(max_size=4) | junk, "outputs": junk},
)
rows_or_records = st.lists(
    cells | st.dictionaries(st.sampled_from([*NAMES, "city"]), scalars | junk), max_size=4
)
native_requests = junk | st.fixed_dictionaries(
    {},
    optional={
        "instances": rows_or_records | cells | junk,
        "dataframe_split": st.fixed_dictionaries(
            {"data": st.lists(cells, max_size=4) | junk},
            optional={"columns": st.lists(st.sampled_from(NAMES) | junk, max_size=4) | junk},
        )
        | junk,
    },
)
signatures = st.sampled_from([NAMED, NAMED_MISSING_OK, MIXED])


def outcome(decode: Callable[[], np.ndarray]) -> np.ndarray | str:
    """The decoded rows, or the message of the BadRequest; any other exception escapes."""
    try:
        return decode()
    except BadRequest as exc:
        return exc.message


def assert_rows_or_message(result: np.ndarray | str, signature: Signature) -> None:
    if isinstance(result, str):
        assert result
    else:
        assert result.ndim == 2
        assert result.shape[1] == signature.n_features
        assert result.shape[0] >= 1


@settings(max_examples=300)
@given(request=oip_requests, signature=signatures)
def test_oip_junk_raises_only_bad_request(request: Any, signature: Signature) -> None:
    result = outcome(lambda: decode_oip(request, signature)[0])
    assert_rows_or_message(result, signature)


@settings(max_examples=300)
@given(request=native_requests, signature=signatures)
def test_native_junk_raises_only_bad_request(request: Any, signature: Signature) -> None:
    assert_rows_or_message(outcome(lambda: decode_native(request, signature)), signature)
