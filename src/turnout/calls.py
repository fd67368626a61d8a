"""The SDK's requests as values: what each verb sends and how its answer is read, built
without talking to the server, so `Client` and `AsyncClient` share all of it and differ
only in how they send a `Call` (`httpx.Client` or `httpx.AsyncClient`)."""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Required, TypedDict, TypeGuard

import httpx
import numpy as np
import numpy.typing as npt

from turnout import oip_binary
from turnout.errors import TurnoutError
from turnout.types import JSON, Array

UNSET: Any = object()
"""A `fallback` not given, as opposed to a fallback of `None`."""

PAGE = 1000
"""Deployments asked for per request when listing them all."""

SINGLE_INPUT = "input-0"
"""The name a model's one input tensor has in its metadata (any name is accepted)."""


class ApiError(TurnoutError):
    """The server answered with an error; `status` is its HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = HTTPStatus(status)


class ServerUnreachable(TurnoutError):
    status = HTTPStatus.SERVICE_UNAVAILABLE


def unreachable(url: str, exc: httpx.TransportError) -> ServerUnreachable:
    return ServerUnreachable(
        f"cannot reach turnout at {url} ({exc}); is 'turnout serve' running? "
        "Set TURNOUT_URL to point elsewhere."
    )


# -- answers -------------------------------------------------------------------------------


@dataclass(frozen=True)
class InferResult:
    """An Open Inference Protocol answer: the output tensors by name, and which version,
    role and revision of the deployment gave them (the `x-turnout-*` headers)."""

    outputs: dict[str, Array]
    model_name: str
    model_version: str
    id: str | None = None
    prediction_id: str | None = None
    role: str | None = None
    revision: int | None = None
    parameters: dict[str, JSON] = field(default_factory=dict)


def raise_for_error(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        message = response.json().get("error", response.text)
    except (ValueError, AttributeError):
        message = response.text or response.reason_phrase
    raise ApiError(response.status_code, str(message))


def json_answer(response: httpx.Response) -> JSON:
    raise_for_error(response)
    if response.status_code == HTTPStatus.NO_CONTENT or not response.content:
        return None
    return response.json()


def text_answer(response: httpx.Response) -> str:
    raise_for_error(response)
    return response.text


def infer_answer(response: httpx.Response) -> InferResult:
    raise_for_error(response)
    header, outputs = oip_binary.decode_response(
        response.content, response.headers.get(oip_binary.HEADER_LENGTH)
    )
    revision = response.headers.get("x-turnout-revision")
    return InferResult(
        outputs=outputs,
        model_name=str(header.get("model_name", "")),
        model_version=str(header.get("model_version", "")),
        id=header.get("id"),
        prediction_id=response.headers.get("x-turnout-prediction-id"),
        role=response.headers.get("x-turnout-role"),
        revision=int(revision) if revision and revision.isdigit() else None,
        parameters=header.get("parameters") or {},
    )


@dataclass(frozen=True)
class Call:
    """One request of the SDK and the function that reads its answer."""

    method: str
    path: str
    json: JSON = None
    params: Mapping[str, Any] | None = None
    data: Mapping[str, str] | None = None
    files: Mapping[str, Any] | Sequence[tuple[str, Any]] | None = None
    """Multipart files by field name, or (field, file) pairs when a field repeats."""
    content: bytes | None = None
    headers: Mapping[str, str] | None = None
    read: Callable[[httpx.Response], Any] = json_answer

    def options(self) -> dict[str, Any]:
        """The keyword arguments of `httpx.Client.request` this call sets."""
        given = {
            "json": self.json,
            "params": self.params,
            "data": self.data,
            "files": self.files,
            "content": self.content,
            "headers": self.headers,
        }
        return {key: value for key, value in given.items() if value is not None}


Steps = Generator[Call, Any, list[JSON]]
"""A verb that takes several requests (paging): it yields each call, is sent back its
answer, and returns the result."""


# -- predictions ---------------------------------------------------------------------------


class OipRequest(TypedDict, total=False):
    """A raw Open Inference Protocol v2 request, as JSON."""

    id: str
    inputs: Required[list[dict[str, Any]]]
    outputs: list[dict[str, Any]]
    parameters: dict[str, Any]


Inputs = Mapping[str, npt.ArrayLike] | npt.ArrayLike
"""Input tensors by name, or one array (sent as `input-0`)."""


def predict(deployment: str, instances: list[Any]) -> Call:
    return Call("POST", f"/v1/deployments/{deployment}/predict", json={"instances": instances})


def infer(
    deployment: str,
    inputs: Inputs,
    *,
    binary: bool,
    version: int | None,
    outputs: Sequence[str] | None,
    request_id: str | None,
) -> Call:
    tensors = inputs if isinstance(inputs, Mapping) else {SINGLE_INPUT: np.asarray(inputs)}
    body = oip_binary.encode_request(tensors, binary=binary, outputs=outputs, request_id=request_id)
    path = _infer_path(deployment, version)
    return Call("POST", path, content=body.content, headers=body.headers, read=infer_answer)


def infer_request(deployment: str, request: OipRequest, *, version: int | None) -> Call:
    return Call("POST", _infer_path(deployment, version), json=request)


def is_oip_request(inputs: object) -> TypeGuard[OipRequest]:
    """Whether `inputs` is a whole OIP request (`{"inputs": [{"name": ...}, ...]}`) rather
    than tensors by name."""
    if not isinstance(inputs, Mapping):
        return False
    tensors = inputs.get("inputs")
    return isinstance(tensors, list) and all(isinstance(t, Mapping) for t in tensors)


def _infer_path(deployment: str, version: int | None) -> str:
    path = f"/v2/models/{deployment}"
    if version is not None:
        path += f"/versions/{version}"
    return path + "/infer"


# -- server --------------------------------------------------------------------------------


def health() -> Call:
    return Call("GET", "/api/v1/health")


def whoami() -> Call:
    return Call("GET", "/api/v1/whoami")


def ready() -> Call:
    return Call("GET", "/v2/health/ready", read=lambda r: r.status_code == HTTPStatus.OK)
