"""`GRPCInferenceService`: the Open Inference Protocol over gRPC, a thin face on the Gateway.

Each RPC translates its message, calls the same core the HTTP face calls (authorize,
route, answer, metadata), and maps turnout's errors to gRPC status codes in one place.
RPCs of the service that turnout does not serve answer UNIMPLEMENTED (the generated base).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import replace
from http import HTTPStatus
from typing import NamedTuple

import grpc

from turnout import __version__, tracing
from turnout.api.auth import Principal
from turnout.errors import Forbidden, NotFound, TurnoutError
from turnout.gateway import codec
from turnout.gateway.access import may_address_any_version
from turnout.gateway.app import SERVER_EXTENSIONS, Answer, Gateway
from turnout.gateway.chain import NoAnswer
from turnout.gateway.grpc import grpc_predict_v2_pb2 as pb
from turnout.gateway.grpc import grpc_predict_v2_pb2_grpc as pb_grpc
from turnout.gateway.grpc import messages
from turnout.gateway.table import Route
from turnout.registry.signature import Signature
from turnout.types import Array

log = logging.getLogger("turnout.gateway.grpc")

STATUS_CODES = {
    HTTPStatus.BAD_REQUEST: grpc.StatusCode.INVALID_ARGUMENT,
    HTTPStatus.UNAUTHORIZED: grpc.StatusCode.UNAUTHENTICATED,
    HTTPStatus.FORBIDDEN: grpc.StatusCode.PERMISSION_DENIED,
    HTTPStatus.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    HTTPStatus.METHOD_NOT_ALLOWED: grpc.StatusCode.UNIMPLEMENTED,
    HTTPStatus.CONFLICT: grpc.StatusCode.FAILED_PRECONDITION,
    HTTPStatus.REQUEST_ENTITY_TOO_LARGE: grpc.StatusCode.RESOURCE_EXHAUSTED,
    HTTPStatus.UNPROCESSABLE_ENTITY: grpc.StatusCode.INVALID_ARGUMENT,
    HTTPStatus.SERVICE_UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
}
"""turnout's error statuses as gRPC codes; anything else is INTERNAL."""

REPLY_SHARE = 0.1
"""Part of the caller's deadline kept for the answer's way back (and the event loop's lag):
a fallback must reach the caller before it gives up, not just be computed in time."""
REPLY_MARGIN_S = (0.002, 0.05)
"""Bounds of that part, in seconds."""

Metadata = Sequence[tuple[str, str | bytes]]


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    """Serves the OIP gRPC service from `gateway`, with HTTP's semantics."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def ServerLive(  # noqa: N802 (the protocol's method names)
        self, request: pb.ServerLiveRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(  # noqa: N802
        self, request: pb.ServerReadyRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.gateway.table.ready and self.gateway.accepting)

    async def ServerMetadata(  # noqa: N802
        self, request: pb.ServerMetadataRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(
            name="turnout", version=__version__, extensions=SERVER_EXTENSIONS
        )

    async def ModelReady(  # noqa: N802
        self, request: pb.ModelReadyRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.ModelReadyResponse:
        async with _status(context):
            who = await self._caller(context, request.name)
            version = messages.version_number(request.version)
            return pb.ModelReadyResponse(ready=await self._ready(request.name, version, who))

    async def ModelMetadata(  # noqa: N802
        self, request: pb.ModelMetadataRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.ModelMetadataResponse:
        async with _status(context):
            who = await self._caller(context, request.name)
            version = messages.version_number(request.version)
            metadata = await self.gateway.metadata(request.name, version, who)
            return messages.model_metadata(metadata)

    async def ModelInfer(  # noqa: N802
        self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.ModelInferResponse:
        deadline = Deadline.of(context)
        if tracing.TRACER is not None:  # this call's task: the caller's trace, if any
            tracing.INCOMING.set(_metadata(context, "traceparent"))
        async with _status(context):
            who = await self._caller(context, request.model_name)
            version = messages.version_number(request.model_version)
            body = messages.infer_request(request)
            wanted = codec.requested_outputs(body)
            route = await self.gateway.route(request.model_name)
            route, bounded = _within(route, deadline)

            def decode(signature: Signature) -> Array:
                return codec.decode_oip(body, signature)[0]

            key = _key(route, context, body)
            answering = self.gateway.answer(
                route, version, decode, request_id=body["id"], key=key, who=who
            )
            answer = await _in_time(answering, deadline, bounded=bounded)
            response = messages.infer_response(
                answer.prediction, wanted, name=request.model_name, version=answer.version,
                request_id=answer.request_id,
                response_parameters={"role": answer.role.value, "revision": answer.revision},
            )  # fmt: skip
            # trailing, not initial: initial metadata of its own costs the call an extra
            # write (about 0.6 ms on loopback); trailing goes out with the status
            context.set_trailing_metadata(_turnout_metadata(answer))
            return response

    async def _caller(
        self, context: grpc.aio.ServicerContext[object, object], deployment: str
    ) -> Principal | None:
        return await self.gateway.authorize(_metadata(context, "authorization"), deployment)

    async def _ready(self, name: str, version: int | None, who: Principal | None) -> bool:
        """Whether the version (default: the champion) is loaded, loading it if needed, as
        the HTTP face answers; versions outside the revision follow its access rules."""
        gateway = self.gateway
        route = await gateway.route(name)
        wanted = route.config.champion if version is None else version
        if version is not None and version not in route.config.versions():
            if not may_address_any_version(who):
                raise Forbidden(
                    f"version {version} is not in revision {route.revision} of deployment "
                    f"{name!r}; only deployer tokens may ask about other versions"
                )
            if version not in gateway.versions_of(route.model):
                raise NotFound(f"version {version} of model {route.model!r} not found")
        if gateway.pool.peek(route.model, wanted) is not None:
            return True
        try:
            await gateway.pool.get(route.model, wanted)
        except TurnoutError:
            return False
        return True


class CallerDeadline(TurnoutError):
    """The call's own gRPC deadline passed before any step could answer."""

    status = HTTPStatus.GATEWAY_TIMEOUT


@contextlib.asynccontextmanager
async def _status(context: grpc.aio.ServicerContext[object, object]) -> AsyncIterator[None]:
    """turnout's errors as gRPC statuses: the one place they are mapped."""
    try:
        yield
    except CallerDeadline as exc:
        await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, exc.message)
    except TurnoutError as exc:
        await context.abort(STATUS_CODES.get(exc.status, grpc.StatusCode.INTERNAL), exc.message)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("gRPC call failed")
        await context.abort(grpc.StatusCode.INTERNAL, "internal error; see the server log")


class Deadline(NamedTuple):
    """The caller's deadline, and the earlier moment its answer must be on its way back
    (both `time.monotonic`)."""

    caller: float
    answer: float

    @classmethod
    def of(cls, context: grpc.aio.ServicerContext[object, object]) -> Deadline | None:
        remaining = context.time_remaining()
        if remaining is None:
            return None
        low, high = REPLY_MARGIN_S
        now = time.monotonic()
        return cls(now + remaining, now + remaining - min(max(remaining * REPLY_SHARE, low), high))

    def on_loop(self) -> float:
        """The caller's deadline on the event loop's clock."""
        return asyncio.get_running_loop().time() + (self.caller - time.monotonic())


def _within(route: Route, deadline: Deadline | None) -> tuple[Route, bool]:
    """The route with the caller's deadline in place of the deployment's when it is
    sooner, so the chain shares *it* between champion and failover and the fallback answers
    in time; whether the caller's deadline is the one that binds."""
    if deadline is None:
        return route, False
    left_ms = max(int((deadline.answer - time.monotonic()) * 1000), 1)
    timeout_ms = route.config.timeout_ms
    if timeout_ms is not None and timeout_ms <= left_ms:
        return route, False
    return replace(route, config=replace(route.config, timeout_ms=left_ms)), True


async def _in_time(
    answering: Awaitable[Answer], deadline: Deadline | None, *, bounded: bool
) -> Answer:
    """The answer, or `CallerDeadline` when the caller's deadline is what ran out."""
    try:
        async with asyncio.timeout_at(None if deadline is None else deadline.on_loop()):
            return await answering
    except NoAnswer as exc:
        if bounded and any(attempt.outcome == "timeout" for attempt in exc.failed):
            raise CallerDeadline(exc.message) from None
        raise
    except TimeoutError:
        raise CallerDeadline("no answer within the call's deadline") from None


def _key(
    route: Route, context: grpc.aio.ServicerContext[object, object], body: dict[str, object]
) -> str | None:
    """The sticky routing key: `header:NAME` reads call metadata, `field:NAME` a request
    parameter or the first value of the input so named (as over HTTP)."""
    sticky = route.config.sticky_key
    if sticky is None or not route.config.challengers:
        return None
    source, _, name = sticky.partition(":")
    if source == "header":
        return _metadata(context, name.lower())
    return codec.oip_field(body, name)


def _metadata(context: grpc.aio.ServicerContext[object, object], key: str) -> str | None:
    for name, value in context.invocation_metadata() or ():
        if name == key:
            return value if isinstance(value, str) else value.decode("latin-1")
    return None


def _turnout_metadata(answer: Answer) -> Metadata:
    """What HTTP sends as `x-turnout-*` headers, as the call's trailing metadata."""
    return (
        ("x-turnout-prediction-id", answer.request_id),
        ("x-turnout-model-version", str(answer.version)),
        ("x-turnout-role", answer.role.value),
        ("x-turnout-revision", str(answer.revision)),
    )
