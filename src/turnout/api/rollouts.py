"""`/api/v1/deployments/{name}/rollout`: start, follow, approve and abort rollouts."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from turnout.api.auth import Principal
from turnout.api.deps import Services, deployer, services, viewer
from turnout.lifecycle.plans import Plan
from turnout.lifecycle.rollouts import parse_plan
from turnout.store import metadata as md
from turnout.types import JSON

router = APIRouter(prefix="/deployments", tags=["rollouts"])


class StartRollout(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1)
    plan: dict[str, Any] | str | None = Field(
        default=None, description="The plan as a mapping or YAML text; default plan if absent."
    )


class Abort(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = ""


@router.post("/{name}/rollout", status_code=201)
def start_rollout(
    name: str,
    body: StartRollout,
    svc: Annotated[Services, Depends(services)],
    who: Annotated[Principal, Depends(deployer)],
) -> dict[str, JSON]:
    """Start moving a version into production through the plan's gates. A rollout already
    running for the deployment is superseded."""
    plan = Plan.from_yaml(body.plan).to_dict() if isinstance(body.plan, str) else body.plan
    _check_holdout(svc, name, plan)
    return svc.rollouts.start(name, body.version, plan, actor=who.name).to_dict()


def _check_holdout(svc: Services, name: str, plan: dict[str, Any] | None) -> None:
    """A holdout file outside the server's data roots is refused before anything looks for
    it, so the answer says nothing about which files exist on the server."""
    if plan is None:
        with svc.rollouts.db.read() as conn:
            plan = md.get_rollout_plan(conn, name)
    validation = parse_plan(plan).validation
    if validation is not None and validation.holdout is not None:
        svc.data_access.check_path(validation.holdout, what="validate.holdout")


@router.get("/{name}/rollout")
def rollout_status(
    name: str, svc: Annotated[Services, Depends(services)], _: Annotated[Principal, Depends(viewer)]
) -> dict[str, JSON]:
    """The latest rollout of the deployment: its step, each gate's evidence and verdict."""
    return svc.rollouts.status(name).to_dict()


@router.get("/{name}/rollout/history")
def rollout_history(
    name: str,
    svc: Annotated[Services, Depends(services)],
    _: Annotated[Principal, Depends(viewer)],
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> list[dict[str, JSON]]:
    """Every step, verdict, approval and abort of every rollout of the deployment, oldest
    first (the newest `limit` events)."""
    return svc.rollouts.history(name, limit=limit)


@router.post("/{name}/rollout/approve")
def approve_rollout(
    name: str,
    svc: Annotated[Services, Depends(services)],
    who: Annotated[Principal, Depends(deployer)],
) -> dict[str, JSON]:
    return svc.rollouts.approve(name, actor=who.name).to_dict()


@router.post("/{name}/rollout/abort")
def abort_rollout(
    name: str,
    body: Abort,
    svc: Annotated[Services, Depends(services)],
    who: Annotated[Principal, Depends(deployer)],
) -> dict[str, JSON]:
    """Stop the rollout; routing goes back to the champion at once."""
    return svc.rollouts.abort(name, actor=who.name, reason=body.reason).to_dict()
