"""Answers for requests the service layer could not take apart itself: integers past what the
database stores, nesting deeper than the interpreter recurses, and bugs (a reference id, the
details only in the server's log)."""

from __future__ import annotations

import json
import logging
import secrets
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response

log = logging.getLogger("turnout.api")

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
RANGE = "integers must be between -2**63 and 2**63-1"


async def out_of_range(request: Request, _: Exception) -> Response:
    """OverflowError (the database refused an integer): 400 naming the field that holds it."""
    where = await _big_integer(request)
    return JSONResponse({"error": f"{where or 'a number in the request'}: {RANGE}"}, 400)


async def too_deep(_: Request, __: Exception) -> Response:
    """RecursionError: a value nested past what the server walks."""
    return JSONResponse({"error": "the request nests values too deeply"}, 400)


async def bug(request: Request, exc: Exception) -> Response:
    """Any other exception: the caller gets a reference, the log gets the details."""
    reference = secrets.token_hex(6)
    log.error(
        "internal error %s on %s %s", reference, request.method, request.url.path, exc_info=exc
    )
    return JSONResponse({"error": "internal error", "reference": reference}, 500)


async def _big_integer(request: Request) -> str | None:
    """Where the request holds an integer out of int64 range: path, query or body."""
    for section, params in (("path", request.path_params), ("query", request.query_params)):
        for name, value in params.items():
            if _too_big(value):
                return f"{section}.{name}"
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("application/json"):
        try:
            return _walk(json.loads(await request.body()), "body")  # big integers stay exact
        except (ValueError, RecursionError, RuntimeError):  # RuntimeError: stream consumed
            return None
    if content_type.startswith("multipart/form-data"):
        form = await request.form()  # parsed once already: this is the cached one
        for name, value in form.items():
            if isinstance(value, str) and (found := _walk(_json_or_text(value), name)):
                return found
    return None


def _walk(value: Any, where: str) -> str | None:
    """The first place in parsed JSON holding an integer out of range (no recursion: the
    value may be nested deeper than the interpreter recurses)."""
    stack = [(value, where)]
    while stack:
        item, at = stack.pop()
        if isinstance(item, dict):
            stack.extend((v, f"{at}.{k}") for k, v in reversed(list(item.items())))
        elif isinstance(item, list):
            stack.extend((v, f"{at}[{i}]") for i, v in reversed(list(enumerate(item))))
        elif _too_big(item):
            return at
    return None


def _too_big(value: object) -> bool:
    if isinstance(value, str):
        text = value.strip().removeprefix("-")
        return text.isdigit() and len(text) >= 19 and _too_big(int(value))
    return (
        isinstance(value, int)
        and not isinstance(value, bool)
        and not (INT64_MIN <= value <= INT64_MAX)
    )


def _json_or_text(value: str) -> object:
    try:
        return json.loads(value)
    except (ValueError, RecursionError):
        return value
