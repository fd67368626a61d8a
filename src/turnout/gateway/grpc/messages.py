"""OIP gRPC messages <-> what the gateway's codec reads and writes.

An inference request becomes the same dict an OIP JSON body decodes to, with each input's
`data` an array (raw contents are read without a copy), so both transports share one
decoder and every check in it. Outputs go back as `raw_output_contents`, as Triton does.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson

from turnout.errors import BadRequest
from turnout.gateway import binary, codec
from turnout.gateway.grpc import grpc_predict_v2_pb2 as pb
from turnout.registry.flavors import Prediction
from turnout.types import JSON, Array

CONTENTS_FIELDS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
"""Where `InferTensorContents` keeps each datatype; FP16 has no typed field (raw only)."""

Parameters = Any
"""A protobuf map of `InferParameter` (the generated stubs give it no exact type)."""


def version_number(text: str) -> int | None:
    """`model_version` as a number; the empty string means "let the deployment route"."""
    if not text:
        return None
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise BadRequest(f"invalid model_version {text!r}: expected a positive integer")
    return int(text)


def parameters(fields: Parameters) -> dict[str, JSON]:
    """An `InferParameter` map as plain values."""
    plain: dict[str, JSON] = {}
    for key, value in fields.items():
        choice = value.WhichOneof("parameter_choice")
        plain[key] = None if choice is None else getattr(value, choice)
    return plain


def infer_request(request: pb.ModelInferRequest) -> dict[str, Any]:
    """The request as the OIP JSON body it stands for, inputs already arrays."""
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise BadRequest(
            f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} inputs; "
            "send one per input, in input order"
        )
    return {
        "id": request.id or None,
        "parameters": parameters(request.parameters),
        "inputs": [
            _input(tensor, index, raw[index] if raw else None)
            for index, tensor in enumerate(request.inputs)
        ],
        "outputs": [{"name": output.name} for output in request.outputs] or None,
    }


def _input(
    tensor: pb.ModelInferRequest.InferInputTensor, index: int, raw: bytes | None
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": tensor.name,
        "datatype": tensor.datatype,
        "shape": list(tensor.shape),
    }
    name, shape, datatype = binary.tensor_head(spec, index)
    if raw is not None:
        if tensor.HasField("contents"):
            raise BadRequest(
                f"input {name!r} has both typed contents and raw_input_contents; send one"
            )
        spec["data"] = binary.tensor_from_bytes(raw, datatype, shape, name)
    else:
        spec["data"] = _typed(tensor.contents, datatype, shape, name)
    return spec


def _typed(contents: pb.InferTensorContents, datatype: str, shape: list[int], name: str) -> Array:
    field = CONTENTS_FIELDS.get(datatype)
    if field is None:
        raise BadRequest(f"input {name!r}: {datatype} has no typed contents; send it raw")
    values = getattr(contents, field)
    count = math.prod(shape)
    if len(values) != count:
        raise BadRequest(
            f"input {name!r}: shape {shape} needs {count} values, {field} has {len(values)}"
        )
    if datatype == "BYTES":
        return _texts(values, name).reshape(shape)
    return np.array(values, dtype=binary.NUMPY_TYPES[datatype]).reshape(shape)


def _texts(values: Any, name: str) -> Array:
    texts = np.empty(len(values), dtype=object)
    for i, value in enumerate(values):
        try:
            texts[i] = value.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest(f"input {name!r}: BYTES element {i} is not UTF-8 text") from None
    return texts


def infer_response(
    prediction: Prediction,
    wanted: list[str] | None,
    *,
    name: str,
    version: int,
    request_id: str,
    response_parameters: dict[str, str | int],
) -> pb.ModelInferResponse:
    """The answer with every output as raw bytes (what tritonclient.grpc reads by default)."""
    response = pb.ModelInferResponse(model_name=name, model_version=str(version), id=request_id)
    for key, value in response_parameters.items():
        if isinstance(value, int):
            response.parameters[key].int64_param = value
        else:
            response.parameters[key].string_param = value
    for output, values in codec.output_tensors(prediction, wanted):
        datatype = codec.output_datatype(output, values)
        response.outputs.add(name=output, datatype=datatype, shape=values.shape)
        response.raw_output_contents.append(binary.output_bytes(_encodable(values), datatype))
    return response


def _encodable(values: Array) -> Array:
    """Object outputs (labels of mixed types, a structured fallback) as text: strings as
    they are, anything else as its JSON."""
    if values.dtype != object:
        return values
    texts = np.empty(values.shape, dtype=object)
    for index, value in np.ndenumerate(values):
        texts[index] = value if isinstance(value, str | bytes) else _json_text(value)
    return texts


def _json_text(value: Any) -> str:
    return orjson.dumps(value, default=str, option=orjson.OPT_SERIALIZE_NUMPY).decode()


def model_metadata(metadata: dict[str, JSON]) -> pb.ModelMetadataResponse:
    """`Gateway.metadata` as the protocol's message; the extra facts go in `properties`
    (strings; JSON for lists and objects)."""
    response = pb.ModelMetadataResponse(
        name=metadata["name"], versions=metadata["versions"], platform=metadata["platform"]
    )
    for tensor in metadata["inputs"]:
        response.inputs.add(**tensor)
    for tensor in metadata["outputs"]:
        response.outputs.add(**tensor)
    for key, value in (metadata.get("parameters") or {}).items():
        response.properties[key] = value if isinstance(value, str) else _json_text(value)
    return response
