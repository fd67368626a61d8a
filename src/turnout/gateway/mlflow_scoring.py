"""MLflow's scoring protocol, as `mlflow models serve` speaks it: JSON (`dataframe_split`,
`dataframe_records`, `instances`, `inputs`, optional `params`) or CSV in, `{"predictions": ...}`
out. Bodies become the native API's payloads, so decoding and its checks stay in `codec`.
"""

from __future__ import annotations

import io
from http import HTTPStatus
from typing import Any

import orjson
import pandas as pd

from turnout.errors import BadRequest, TurnoutError
from turnout.types import JSON

FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
CONTENT_TYPES = ("application/json", "text/csv")
REQUIRED_FORMAT = (
    "The input must be a JSON dictionary with exactly one of the input fields "
    "{'dataframe_split', 'dataframe_records', 'instances', 'inputs'}"
)
ERROR_CODES = {
    HTTPStatus.BAD_REQUEST: "BAD_REQUEST",
    HTTPStatus.UNAUTHORIZED: "UNAUTHENTICATED",
    HTTPStatus.FORBIDDEN: "PERMISSION_DENIED",
    HTTPStatus.NOT_FOUND: "RESOURCE_DOES_NOT_EXIST",
    HTTPStatus.SERVICE_UNAVAILABLE: "TEMPORARILY_UNAVAILABLE",
}
"""MLflow's `error_code` for a status; any other reads BAD_REQUEST (4xx) or INTERNAL_ERROR."""


class UnsupportedMediaType(TurnoutError):
    status = HTTPStatus.UNSUPPORTED_MEDIA_TYPE


def parse(raw: bytes, content_type: bytes | None) -> dict[str, Any]:
    """A scoring body as a native payload (`dataframe_split`, `instances`, ...)."""
    mime = _media_type(content_type)
    if mime == "text/csv":
        return {"dataframe_split": _csv(raw)}
    if mime in ("application/json", ""):
        return _json(raw)
    raise UnsupportedMediaType(
        "This predictor only supports the following content types: "
        f"{', '.join(CONTENT_TYPES)}. Got '{mime}'."
    )


def _media_type(content_type: bytes | None) -> str:
    """The media type, refusing what MLflow refuses: a charset other than UTF-8, or any
    other parameter. No content type at all reads as JSON."""
    if content_type is None:
        return ""
    mime, *parameters = (p.strip() for p in content_type.decode("latin-1").split(";"))
    values = {key.strip().lower(): value.strip() for key, _, value in
              (p.partition("=") for p in parameters if p)}  # fmt: skip
    if values.get("charset", "utf-8").strip('"').lower() != "utf-8":
        raise UnsupportedMediaType("The scoring server only supports UTF-8")
    unknown = sorted(set(values) - {"charset"})
    if unknown:
        raise UnsupportedMediaType(f"Unrecognized content type parameters: {', '.join(unknown)}.")
    return mime.lower()


def _json(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(
            f"Invalid input. Ensure that input is a valid JSON formatted string. Error: {exc}"
        ) from None
    if isinstance(body, list):
        raise BadRequest(f"Invalid input. {REQUIRED_FORMAT}. Received a list.")
    if not isinstance(body, dict):
        raise BadRequest(f"Invalid input. {REQUIRED_FORMAT}. Received {type(body).__name__}.")
    present = [key for key in FORMATS if key in body]
    if len(present) != 1:
        fields = [key for key in body if key in FORMATS]
        raise BadRequest(f"{REQUIRED_FORMAT}. Received dictionary with input fields: {fields}.")
    key = present[0]
    value = body[key]
    if key in ("instances", "inputs") and isinstance(value, dict):
        return {"dataframe_split": _columnar(value, key)}
    return {key: value}


def _columnar(columns: dict[str, Any], key: str) -> dict[str, Any]:
    """TF-serving's columnar form, `{"inputs": {"a": [1, 2], "b": [3, 4]}}`, as a split frame."""
    values = [v if isinstance(v, list) else [v] for v in columns.values()]
    if not values or len({len(v) for v in values}) != 1:
        raise BadRequest(f"'{key}' as columns needs lists of one length, one per column")
    return {"columns": list(columns), "data": [list(row) for row in zip(*values, strict=True)]}


def _csv(raw: bytes) -> dict[str, Any]:
    """A CSV body with a header row, as a split frame; empty cells are missing values."""
    try:
        frame = pd.read_csv(io.BytesIO(raw), encoding="utf-8")
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise BadRequest(
            "Failed to parse input as a Pandas DataFrame. Ensure that the input is a valid "
            f"CSV-formatted Pandas DataFrame produced using the `pandas.DataFrame.to_csv()` "
            f"method. Error: '{exc}'"
        ) from None
    data = frame.astype(object).where(frame.notna(), None).to_numpy().tolist()
    return {"columns": [str(c) for c in frame.columns], "data": data}


def error_body(exc: TurnoutError) -> dict[str, JSON]:
    """An error as MLflow's clients read it (`error_code`, `message`) and as turnout's do."""
    status = HTTPStatus(exc.status)
    code = ERROR_CODES.get(status, "BAD_REQUEST" if status < 500 else "INTERNAL_ERROR")
    return {"error": exc.message, "error_code": code, "message": exc.message}
