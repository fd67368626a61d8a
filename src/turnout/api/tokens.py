"""`/api/v1/tokens` (admin) and `/api/v1/whoami`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict

from turnout.api.auth import Principal
from turnout.api.deps import Services, admin, services, viewer
from turnout.api.views import token_json
from turnout.registry.names import check_name
from turnout.store.records import TokenRole
from turnout.types import JSON

router = APIRouter(tags=["auth"])


class CreateToken(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    role: TokenRole


@router.get("/whoami")
def whoami(who: Annotated[Principal, Depends(viewer)]) -> dict[str, JSON]:
    return {"name": who.name, "role": who.role.value}


@router.get("/tokens")
def list_tokens(
    svc: Annotated[Services, Depends(services)], _: Annotated[Principal, Depends(admin)]
) -> list[dict[str, JSON]]:
    return [token_json(t) for t in svc.tokens.list_all()]


@router.post("/tokens", status_code=201)
def create_token(
    body: CreateToken,
    svc: Annotated[Services, Depends(services)],
    _: Annotated[Principal, Depends(admin)],
) -> dict[str, JSON]:
    check_name(body.name, "token")
    token, record = svc.tokens.create(body.name, body.role)
    return {**token_json(record), "token": token}


@router.delete("/tokens/{token_id}", status_code=204)
def revoke_token(
    token_id: int,
    svc: Annotated[Services, Depends(services)],
    who: Annotated[Principal, Depends(admin)],
) -> None:
    svc.tokens.revoke(token_id, who.name)
