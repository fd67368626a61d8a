"""`/api/v1/deployments/{name}/actuals` and `/metrics`: ground truth in, production metrics out."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool

from turnout.api.auth import Principal
from turnout.api.deps import Services, deployer, services, viewer
from turnout.errors import BadRequest, PayloadTooLarge
from turnout.monitoring.actuals import parse_table
from turnout.monitoring.service import Window
from turnout.types import JSON

router = APIRouter(prefix="/deployments", tags=["monitoring"])

MAX_ACTUALS_BYTES = 64 << 20
TABLE_TYPES = {
    "text/csv": "actuals.csv",
    "application/csv": "actuals.csv",
    "application/vnd.apache.parquet": "actuals.parquet",
    "application/x-parquet": "actuals.parquet",
    "application/octet-stream": "actuals.parquet",
}


async def _rows(request: Request) -> list[object]:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_ACTUALS_BYTES:
            raise PayloadTooLarge(
                f"actuals body over {MAX_ACTUALS_BYTES >> 20} MiB; send it in several requests"
            )
    kind = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if kind in TABLE_TYPES:
        return list(await run_in_threadpool(parse_table, bytes(body), TABLE_TYPES[kind]))
    if kind != "application/json":
        raise BadRequest(
            f"unsupported content type {kind!r}: send JSON rows, text/csv or Parquet "
            "(application/vnd.apache.parquet)"
        )
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"malformed JSON: {exc}") from None
    if isinstance(data, dict) and isinstance(data.get("actuals"), list) and len(data) == 1:
        data = data["actuals"]
    if not isinstance(data, list):
        raise BadRequest(
            'expected a JSON array of {"prediction_id": ..., "actual": ...} rows '
            '(or {"actuals": [...]})'
        )
    return data


@router.post("/{name}/actuals")
async def post_actuals(
    name: str,
    request: Request,
    svc: Annotated[Services, Depends(services)],
    _: Annotated[Principal, Depends(deployer)],
) -> dict[str, JSON]:
    """Ground truth for earlier predictions, by prediction id: JSON rows
    `[{"prediction_id": "...", "actual": ...}]`, or a CSV / Parquet table with those two
    columns. Idempotent: posting an id again replaces its actual. The answer reports every
    row that was not stored (unknown ids, invalid rows) and why."""
    rows = await _rows(request)
    report = await run_in_threadpool(svc.monitor.post_actuals, name, rows)
    return report.to_dict()


@router.get("/{name}/metrics")
def deployment_metrics(
    name: str,
    svc: Annotated[Services, Depends(services)],
    _: Annotated[Principal, Depends(viewer)],
    window: Annotated[
        str, Query(description="How far back: 15m, 1h, 24h, 7d ... or 'all'.")
    ] = "24h",
) -> dict[str, JSON]:
    """Per version and role over the window: traffic, outcome rates, latency percentiles,
    accuracy (or regression errors) against actuals with 95% intervals, and drift of the
    inputs and predictions against each version's training baseline."""
    return svc.monitor.metrics(name, Window.parse(window))
