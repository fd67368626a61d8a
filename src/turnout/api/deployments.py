"""`/api/v1/deployments`: create deployments and read their state and history."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from turnout.api.auth import Principal
from turnout.api.deps import Services, deployer, services, viewer
from turnout.api.views import deployment_json, revision_json
from turnout.lifecycle.deployments import NewDeployment
from turnout.types import JSON

router = APIRouter(prefix="/deployments", tags=["deployments"])


class CreateDeployment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    model: str
    version: int | None = Field(default=None, ge=1)
    timeout_ms: int | None = Field(default=None, ge=1)
    failover: int | None = Field(default=None, ge=1)
    fallback: Any = None


@router.get("")
def list_deployments(
    svc: Annotated[Services, Depends(services)], _: Annotated[Principal, Depends(viewer)]
) -> list[dict[str, JSON]]:
    return [deployment_json(v) for v in svc.deployments.list_all()]


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
            actor=who.name,
        )
    )
    return deployment_json(view)


@router.get("/{name}")
def show_deployment(
    name: str, svc: Annotated[Services, Depends(services)], _: Annotated[Principal, Depends(viewer)]
) -> dict[str, JSON]:
    return deployment_json(svc.deployments.get(name))


@router.get("/{name}/history")
def deployment_history(
    name: str, svc: Annotated[Services, Depends(services)], _: Annotated[Principal, Depends(viewer)]
) -> list[dict[str, JSON]]:
    return [revision_json(r) for r in svc.deployments.history(name)]
