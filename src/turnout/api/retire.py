"""Archive (deployer) and delete (admin) versions, models and deployments."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path

from turnout.api.auth import Principal
from turnout.api.deps import Services, admin, deployer, services
from turnout.api.views import version_json
from turnout.types import JSON

router = APIRouter(tags=["retire"])

Version = Annotated[int, Path(ge=1, le=2**31 - 1)]


@router.post("/models/{name}/versions/{version}/archive")
def archive_version(
    name: str,
    version: Version,
    svc: Annotated[Services, Depends(services)],
    who: Annotated[Principal, Depends(deployer)],
) -> dict[str, JSON]:
    """Keep the version readable but never newly deploy or route it."""
    return version_json(svc.retirement.archive_version(name, version, actor=who.name))


@router.delete("/models/{name}/versions/{version}", status_code=204)
def delete_version(
    name: str,
    version: Version,
    svc: Annotated[Services, Depends(services)],
    who: Annotated[Principal, Depends(admin)],
) -> None:
    """409 while a deployment's active revision or a rollout in progress needs it."""
    svc.retirement.delete_version(name, version, actor=who.name)


@router.delete("/models/{name}", status_code=204)
def delete_model(
    name: str,
    svc: Annotated[Services, Depends(services)],
    who: Annotated[Principal, Depends(admin)],
) -> None:
    """The model and all its versions; 409 while any deployment serves the model."""
    svc.retirement.delete_model(name, actor=who.name)


@router.delete("/deployments/{name}", status_code=204)
def delete_deployment(
    name: str,
    svc: Annotated[Services, Depends(services)],
    who: Annotated[Principal, Depends(admin)],
) -> None:
    """Gateways stop serving it at their next routing refresh; 409 during a rollout or job."""
    svc.retirement.delete_deployment(name, actor=who.name)
