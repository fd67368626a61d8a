"""The prediction API over HTTP as a plain ASGI app: OIP v2 under `/v2` (JSON or binary
tensors); native JSON, KServe v1 and MLflow scoring under `/v1`; MLflow's `/invocations`.

Kept free of a web framework on purpose: this is the hot path, and each request does
only decode -> route -> predict -> encode.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import orjson

from turnout import __version__, tracing
from turnout.api.auth import Principal
from turnout.errors import BadRequest, ModelUnavailable, NotFound, PayloadTooLarge, TurnoutError
from turnout.gateway import binary, codec, mlflow_scoring
from turnout.gateway.dataplane import Answer, DataPlane
from turnout.gateway.table import Route
from turnout.registry.signature import Signature
from turnout.types import JSON, Array, Receive, Scope, Send

__all__ = ["SERVER_EXTENSIONS", "Answer", "Gateway", "MethodNotAllowed"]

JSON_HEADER = (b"content-type", b"application/json")
SERVER_EXTENSIONS: list[str] = ["binary_tensor_data"]
DEPLOYMENT_HEADER = b"x-turnout-deployment"
"""Names the deployment on paths that do not (MLflow's `POST /invocations`)."""


Reply = tuple[int, bytes, list[tuple[bytes, bytes]]]


def _response(status: int, body: JSON, headers: list[tuple[bytes, bytes]] | None = None) -> Reply:
    payload = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
    length = (b"content-length", str(len(payload)).encode())
    return status, payload, [JSON_HEADER, length, *(headers or [])]


class Gateway(DataPlane):
    """The HTTP face of the data plane; errors become `{"error": ...}`."""

    @staticmethod
    def serves(path: str) -> bool:
        """Whether a request path belongs to the prediction API, for the server to route."""
        return path.startswith(("/v2/", "/v1/")) or path in ("/v2", "/invocations")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if tracing.TRACER is not None:  # this request's task: the caller's trace, if any
            tracing.INCOMING.set(_traceparent(scope))
        try:
            status, body, headers = await self._dispatch(scope, receive)
        except TurnoutError as exc:
            status, body, headers = _response(exc.status, {"error": exc.message})
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _dispatch(self, scope: Scope, receive: Receive) -> Reply:
        method = scope["method"]
        heads = _heads(scope)
        parts = scope["path"].strip("/").split("/")
        if parts[0] == "v1":
            return await self._v1(method, parts, heads, receive, scope)
        if parts == ["invocations"]:
            named = heads.deployment
            name = None if named is None else bytes(named).decode("latin-1")
            return await self._invocations(method, name, heads, receive, scope)
        return await self._oip(method, parts[1:], heads, receive, scope)

    async def _v1(
        self, method: str, parts: list[str], heads: Heads, receive: Receive, scope: Scope
    ) -> Reply:
        """The native API, MLflow scoring (`/v1/deployments/NAME/invocations`) and KServe v1
        (`/v1/models/NAME`, `/v1/models/NAME:predict`)."""
        if len(parts) == 4 and parts[1] == "deployments":
            if parts[3] == "predict":
                self._only(method, "POST")
                who = await self.authorize(heads.authorization, parts[2])
                return await self._native(parts[2], _json(await self._read(receive)), scope, who)
            if parts[3] == "invocations":
                return await self._invocations(method, parts[2], heads, receive, scope)
        if len(parts) == 3 and parts[1] == "models":
            name, colon, verb = parts[2].rpartition(":")
            if not colon:
                self._only(method, "GET")
                who = await self.authorize(heads.authorization, parts[2])
                return await self._model_ready(parts[2], None, who)
            if verb == "predict":
                self._only(method, "POST")
                who = await self.authorize(heads.authorization, name)
                request = _json(await self._read(receive))
                answer = await self._answer_native(name, request, scope, who)
                return _response(200, codec.encode_predictions(answer.prediction), _headers(answer))
        raise NotFound(f"no route {scope['path']}")

    async def _invocations(
        self, method: str, name: str | None, heads: Heads, receive: Receive, scope: Scope
    ) -> Reply:
        """MLflow scoring; errors carry MLflow's `error_code` and `message` beside `error`.
        `name` is None on `/invocations` without an `x-turnout-deployment` header."""
        try:
            self._only(method, "POST")
            if name is None:
                raise BadRequest(
                    "POST /invocations needs an x-turnout-deployment header naming the deployment"
                )
            who = await self.authorize(heads.authorization, name)
            request = mlflow_scoring.parse(await self._read(receive), heads.content_type)
            answer = await self._answer_native(name, request, scope, who)
        except TurnoutError as exc:
            return _response(exc.status, mlflow_scoring.error_body(exc))
        return _response(200, codec.encode_predictions(answer.prediction), _headers(answer))

    async def _oip(
        self, method: str, parts: list[str], heads: Heads, receive: Receive, scope: Scope
    ) -> Reply:
        path = scope["path"]
        if not parts or parts == [""]:
            self._only(method, "GET")
            return _response(
                200, {"name": "turnout", "version": __version__, "extensions": SERVER_EXTENSIONS}
            )
        if parts[0] == "health" and len(parts) == 2 and parts[1] in ("live", "ready"):
            self._only(method, "GET")
            ready = parts[1] == "live" or (self.table.ready and self.accepting)
            return _response(
                200 if ready else 503, {parts[1]: ready} if ready else {"error": "not ready"}
            )
        if parts[0] != "models" or len(parts) < 2:
            raise NotFound(f"no route {path}")
        name, rest = parts[1], parts[2:]
        who = await self.authorize(heads.authorization, name)
        version: int | None = None
        if len(rest) >= 2 and rest[0] == "versions":
            version = _version_number(rest[1])
            rest = rest[2:]
        if rest == []:
            self._only(method, "GET")
            return _response(200, await self.metadata(name, version, who))
        if rest == ["ready"]:
            self._only(method, "GET")
            return await self._model_ready(name, version, who)
        if rest == ["infer"]:
            self._only(method, "POST")
            request = await self._oip_request(heads, receive)
            return await self._infer(name, version, request, scope, who)
        raise NotFound(f"no route {path}")

    @staticmethod
    def _only(method: str, allowed: str) -> None:
        if method != allowed:
            raise MethodNotAllowed(f"method {method} not allowed here; use {allowed}")

    async def _read(self, receive: Receive) -> bytes:
        chunks = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise BadRequest("client disconnected")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise PayloadTooLarge(f"request body over {self.max_body_bytes} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        raw = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        if not raw:
            raise BadRequest("empty request body; send a JSON object")
        return raw

    async def _oip_request(self, heads: Heads, receive: Receive) -> Any:
        """An OIP inference request; raw tensors after a JSON header become input arrays."""
        raw = await self._read(receive)
        if heads.header_length is None:
            return _json(raw)
        request, tensors = binary.split(raw, binary.header_length(heads.header_length))
        binary.attach_inputs(request, tensors)
        return request

    @staticmethod
    def _key(route: Route, scope: Scope, field: Callable[[str], str | None]) -> str | None:
        """The sticky routing key of this request, when the revision names one."""
        sticky = route.config.sticky_key
        if sticky is None or not route.config.challengers:
            return None
        source, _, name = sticky.partition(":")
        if source == "header":
            wanted = name.encode()
            for header, value in scope["headers"]:
                if header == wanted:
                    return bytes(value).decode("latin-1")
            return None
        return field(name)

    # -- protocols ---------------------------------------------------------------------------

    async def _infer(
        self, name: str, version: int | None, request: Any, scope: Scope, who: Principal | None
    ) -> Reply:
        route = await self.route(name)
        fields: dict[str, Any] = {}

        def decode(signature: Signature) -> Array:
            rows, parsed = codec.decode_oip(request, signature)
            fields.update(parsed)
            return rows

        request_id = request.get("id") if isinstance(request, dict) else None
        if request_id is not None and not isinstance(request_id, str):
            raise BadRequest("'id' must be a string")
        wanted: list[str] | None = None
        every, chosen = False, set[str]()
        if isinstance(request, dict):
            wanted = codec.requested_outputs(request)
            every, chosen = binary.binary_outputs(request)
        key = self._key(route, scope, lambda field: codec.oip_field(request, field))
        answer = await self.answer(route, version, decode, request_id=request_id, key=key, who=who)
        body: dict[str, JSON] = {
            "model_name": name,
            "model_version": str(answer.version),
            "id": answer.request_id,
            "parameters": {
                "prediction_ids": answer.prediction_ids,
                "revision": answer.revision,
                "role": answer.role.value,
            },
        }
        if not (every or chosen):
            body["outputs"] = codec.encode_oip_outputs(answer.prediction, wanted)
            return _response(200, body, _headers(answer))
        body["outputs"], buffers = codec.encode_oip_binary(
            answer.prediction, wanted, every=every, chosen=chosen
        )
        payload, header_length = binary.encode(body, buffers)
        return (
            200,
            payload,
            [
                (b"content-type", b"application/octet-stream"),
                (b"content-length", str(len(payload)).encode()),
                (binary.HEADER_LENGTH, str(header_length).encode()),
                *_headers(answer),
            ],
        )

    async def _native(self, name: str, request: Any, scope: Scope, who: Principal | None) -> Reply:
        answer = await self._answer_native(name, request, scope, who)
        body = codec.encode_native(answer.prediction)
        body["prediction_ids"] = answer.prediction_ids
        body["model_version"] = answer.version
        body["revision"] = answer.revision
        body["role"] = answer.role.value
        return _response(200, body, _headers(answer))

    async def _answer_native(
        self, name: str, request: Any, scope: Scope, who: Principal | None
    ) -> Answer:
        """The routed answer to a rows-or-records payload (native, KServe v1, MLflow)."""
        route = await self.route(name)
        key = self._key(route, scope, lambda field: codec.native_field(request, field))
        return await self.answer(
            route,
            None,
            lambda signature: codec.decode_native(request, signature),
            request_id=None,
            key=key,
            who=who,
        )

    async def _model_ready(self, name: str, version: int | None, who: Principal | None) -> Reply:
        route = await self.route(name)
        wanted = route.config.champion if version is None else version
        if version is not None:
            await self._addressable(route, version, who)
        ready = self.pool.peek(route.model, wanted) is not None
        if not ready:
            try:
                await self._load(route.model, wanted)
                ready = True
            except ModelUnavailable as exc:
                return _response(503, {"name": name, "ready": False, "error": exc.message})
        return _response(200, {"name": name, "ready": ready})


class Heads(NamedTuple):
    """The few request headers the gateway reads, found in one pass."""

    authorization: str | None
    header_length: bytes | None
    content_type: bytes | None
    deployment: bytes | None


def _heads(scope: Scope) -> Heads:
    authorization = header_length = content_type = deployment = None
    for key, value in scope["headers"]:
        if key == b"authorization":
            authorization = bytes(value).decode("latin-1")
        elif key == b"content-type":
            content_type = value
        elif key == binary.HEADER_LENGTH:
            header_length = value
        elif key == DEPLOYMENT_HEADER:
            deployment = value
    return Heads(authorization, header_length, content_type, deployment)


def _json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"malformed JSON: {exc}") from None


class MethodNotAllowed(TurnoutError):
    status = 405  # type: ignore[assignment]


def _version_number(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise BadRequest(f"invalid version {text!r}: expected a positive integer")
    return int(text)


def _headers(answer: Answer) -> list[tuple[bytes, bytes]]:
    return [
        (b"x-turnout-prediction-id", answer.request_id.encode()),
        (b"x-turnout-model-version", str(answer.version).encode()),
        (b"x-turnout-role", answer.role.value.encode()),
        (b"x-turnout-revision", str(answer.revision).encode()),
    ]


def _traceparent(scope: Scope) -> str | None:
    for key, value in scope["headers"]:
        if key == b"traceparent":
            return bytes(value).decode("latin-1")
    return None
