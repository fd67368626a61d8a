"""The management API's door: a request that carries a body must show a valid token before
any of it is read, and a body past its limit is refused as it arrives, never buffered.

Without it a caller with no token could make the server parse a 100 MB JSON body, or spool
a 300 MB upload to disk, before the 401.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from http import HTTPStatus

import orjson
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException

from turnout.api.monitoring import MAX_ACTUALS_BYTES
from turnout.errors import TurnoutError
from turnout.types import Message, Receive, Scope, Send

MAX_JSON_BYTES = 16 << 20
"""JSON and YAML bodies (specs, policies, routing changes) are small."""
UPLOAD_OVERHEAD_BYTES = 1 << 20
"""What a multipart upload may carry beyond its files' limit: form fields, part headers."""

ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class BodyLimits:
    """ASGI middleware in front of the management API."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        authenticate: Callable[[str | None], object],
        max_upload_bytes: int,
        max_json_bytes: int = MAX_JSON_BYTES,
    ) -> None:
        self.app = app
        self.authenticate = authenticate
        """Raises a TurnoutError (401) for a missing, unknown or expired token."""
        self.max_upload_bytes = max_upload_bytes
        self.max_json_bytes = max_json_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = Headers(scope=scope)
        if scope["type"] != "http" or not _has_body(headers):
            await self.app(scope, receive, send)
            return
        try:
            await asyncio.to_thread(self.authenticate, headers.get("authorization"))
        except TurnoutError as exc:
            await refuse(send, exc.status, exc.message)
            return
        limit = self.limit(scope["path"], headers.get("content-type", ""))
        declared = headers.get("content-length")
        if declared is not None and not declared.strip().isdigit():
            await refuse(send, HTTPStatus.BAD_REQUEST, "content-length is not a number")
            return
        if declared is not None and int(declared) > limit:
            await refuse(send, HTTPStatus.REQUEST_ENTITY_TOO_LARGE, _too_large(limit))
            return
        await self.app(scope, bounded(receive, limit), send)

    def limit(self, path: str, content_type: str) -> int:
        if content_type.lower().startswith("multipart/form-data"):
            return self.max_upload_bytes + UPLOAD_OVERHEAD_BYTES
        if path.endswith("/actuals"):  # ground truth comes as whole tables
            return MAX_ACTUALS_BYTES
        return self.max_json_bytes


def _has_body(headers: Headers) -> bool:
    length = headers.get("content-length")
    return "transfer-encoding" in headers or (length is not None and length.strip() != "0")


def bounded(receive: Receive, limit: int) -> Receive:
    """`receive` that refuses (413) once more than `limit` body bytes have arrived."""
    seen = 0

    async def counted() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise HTTPException(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, _too_large(limit))
        return message

    return counted


def _too_large(limit: int) -> str:
    return f"request body over {limit >> 20} MiB"


async def refuse(send: Send, status: int, message: str) -> None:
    """Answer without reading the body, and close the connection: the rest of the body is
    not worth receiving."""
    body = orjson.dumps({"error": message})
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ],
    })  # fmt: skip
    await send({"type": "http.response.body", "body": body})
