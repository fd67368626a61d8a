"""The FastAPI app for `/api/v1`, with every error mapped once to `{"error": ...}`."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from turnout import __version__
from turnout.api import (
    apply,
    audit,
    batch,
    data,
    deployments,
    models,
    monitoring,
    problems,
    retire,
    retrain,
    rollouts,
    tokens,
)
from turnout.api.auth import Principal
from turnout.api.deps import Services, viewer
from turnout.errors import TurnoutError
from turnout.host.metrics import HostCollector
from turnout.monitoring.prometheus import FleetCollector, render, scrape

API_PREFIX = "/api/v1"


def _location(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc if p not in ("body", "query", "path"))


def _validation_message(exc: RequestValidationError) -> str:
    problems = [f"{_location(tuple(e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()[:5]]
    return "invalid request: " + "; ".join(problems)


def create_api(svc: Services, *, fleet: FleetCollector | None = None) -> FastAPI:
    api = FastAPI(
        title="turnout management API",
        version=__version__,
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
    )
    api.state.services = svc
    for router in (
        apply.router,
        models.router,
        deployments.router,
        monitoring.router,
        rollouts.router,
        retrain.router,
        batch.router,
        tokens.router,
        audit.router,
        retire.router,
        data.router,
    ):
        api.include_router(router, prefix=API_PREFIX)

    @api.exception_handler(TurnoutError)
    async def _turnout_error(_: Request, exc: TurnoutError) -> Response:
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    @api.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> Response:
        return JSONResponse({"error": _validation_message(exc)}, status_code=422)

    @api.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> Response:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)

    api.add_exception_handler(OverflowError, problems.out_of_range)
    api.add_exception_handler(RecursionError, problems.too_deep)
    api.add_exception_handler(Exception, problems.bug)

    fleet = fleet or FleetCollector(svc.routing.live_workers)

    @api.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        """Counters and latency histograms summed over every live gateway worker."""
        body, content_type = await scrape(fleet)
        hosting, _ = await asyncio.to_thread(render, HostCollector(svc.hosting))
        return Response(body + hosting, media_type=content_type)

    @api.get(f"{API_PREFIX}/host", tags=["host"])
    def host_status(_: Annotated[Principal, Depends(viewer)]) -> dict[str, Any]:
        """This node's model host: runners, and each model's replicas, memory, hits, misses,
        loads, evictions and cold-load times."""
        return svc.hosting()

    @api.get(f"{API_PREFIX}/health", tags=["health"])
    def health() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    return api
