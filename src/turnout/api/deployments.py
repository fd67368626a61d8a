"""`/api/v1/deployments`: create deployments and read their state and history."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from turnout.api.auth import Principal
from turnout.api.deps import Services, deployer, services, viewer
from turnout.api.views import applied_json, deployment_json, revision_json, worker_json
from turnout.errors import TurnoutError
from turnout.lifecycle.deployments import NewDeployment
from turnout.lifecycle.routing import RouteChange
from turnout.monitoring.stats import merge
from turnout.types import JSON

router = APIRouter(prefix="/deployments", tags=["deployments"])
DEFAULT_PAGE = 100
MAX_PAGE = 1000


class CreateDeployment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    model: str
    version: int | None = Field(default=None, ge=1)
    timeout_ms: int | None = Field(default=None, ge=1)
    failover: int | None = Field(default=None, ge=1)
    fallback: Any = None
    log_payloads: float = Field(
        default=1.0, ge=0.0, le=1.0, description="Share of requests whose payloads are logged."
    )
    keep_loaded: bool = Field(
        default=False, description="Pin the champion in memory: never evicted."
    )
    isolation: Literal["shared", "dedicated"] | None = Field(
        default=None, description="Runners shared with other models, or one of its own."
    )
    max_replicas: int | None = Field(
        default=None, ge=1, le=256, description="Runners a hot version may use at most."
    )


@router.get("")
def list_deployments(
    svc: Annotated[Services, Depends(services)],
    _: Annotated[Principal, Depends(viewer)],
    response: Response,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
    offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
    prefix: Annotated[str, Query(max_length=128)] = "",
) -> list[dict[str, JSON]]:
    """One page of deployments in name order; `x-total-count` says how many there are."""
    views, total = svc.deployments.list_page(limit=limit, offset=offset, prefix=prefix)
    response.headers["x-total-count"] = str(total)
    return [deployment_json(v) for v in views]


@router.post("", status_code=201)
def create_deployment(
    body: CreateDeployment,
    svc: Annotated[Services, Depends(services)],
    who: Annotated[Principal, Depends(deployer)],
) -> dict[str, JSON]:
    view = svc.deployments.create(
        NewDeployment(
            name=body.name,
            model=body.model,
            version=body.version,
            timeout_ms=body.timeout_ms,
            failover=body.failover,
            fallback=body.fallback,
            has_fallback="fallback" in body.model_fields_set,
            log_payloads=body.log_payloads,
            keep_loaded=body.keep_loaded,
            isolation=body.isolation,
            max_replicas=body.max_replicas,
            actor=who.name,
        )
    )
    acknowledged, workers = svc.routing.wait_for_workers(view.deployment.name, 1)
    return {
        **deployment_json(view),
        "acknowledged": acknowledged,
        "workers": [worker_json(w, view.deployment.name) for w in workers],
    }


@router.get("/{name}")
def show_deployment(
    name: str, svc: Annotated[Services, Depends(services)], _: Annotated[Principal, Depends(viewer)]
) -> dict[str, JSON]:
    body = deployment_json(svc.deployments.get(name))
    workers = svc.routing.live_workers()
    body["workers"] = [worker_json(w, name) for w in workers]
    body["traffic"] = merge([s for w in workers for s in w.stats if s["deployment"] == name])
    model = body["model"]
    body["breakers"] = [
        {"worker": w.id, **b} for w in workers for b in w.breakers if b.get("model") == model
    ]
    body["hosting"] = _hosting(svc, model)
    return body


def _hosting(svc: Services, model: str) -> list[dict[str, JSON]]:
    """Where this node's model host holds the deployment model's versions."""
    try:
        status = svc.hosting()
    except TurnoutError:
        return []
    prefix = f"{model}:"
    return [m for m in status.get("models", []) if str(m["key"]).startswith(prefix)]


class RouteBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    challengers: dict[int, float] = Field(default_factory=dict)
    shadows: dict[int, float] = Field(default_factory=dict)
    sticky_key: str | None = None
    clear: bool = False
    log_payloads: float | None = Field(default=None, ge=0.0, le=1.0)


class PromoteBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1)


class RollbackBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to_revision: int | None = Field(default=None, ge=1)


@router.post("/{name}/route")
def route(
    name: str,
    body: RouteBody,
    svc: Annotated[Services, Depends(services)],
    who: Annotated[Principal, Depends(deployer)],
) -> dict[str, JSON]:
    """Split live traffic between the champion and challengers, and mirror it to shadows."""
    change = RouteChange(
        deployment=name,
        challengers=body.challengers,
        shadows=body.shadows,
        sticky_key=body.sticky_key,
        clear=body.clear,
        log_payloads=body.log_payloads,
        actor=who.name,
    )
    return applied_json(svc.routing.route(change), name)


@router.post("/{name}/promote")
def promote(
    name: str,
    body: PromoteBody,
    svc: Annotated[Services, Depends(services)],
    who: Annotated[Principal, Depends(deployer)],
) -> dict[str, JSON]:
    """Blue-green switch: the version becomes champion; the old champion stays as standby."""
    return applied_json(svc.routing.promote(name, body.version, actor=who.name), name)


@router.post("/{name}/rollback")
def rollback(
    name: str,
    body: RollbackBody,
    svc: Annotated[Services, Depends(services)],
    who: Annotated[Principal, Depends(deployer)],
) -> dict[str, JSON]:
    """Re-activate an earlier revision (the previous one by default) as a new revision."""
    applied = svc.routing.rollback(name, to_revision=body.to_revision, actor=who.name)
    return applied_json(applied, name)


@router.get("/{name}/history")
def deployment_history(
    name: str, svc: Annotated[Services, Depends(services)], _: Annotated[Principal, Depends(viewer)]
) -> list[dict[str, JSON]]:
    return [revision_json(r) for r in svc.deployments.history(name)]
