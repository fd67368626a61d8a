"""`/api/v1/tokens` (admin) and `/api/v1/whoami`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict

from turnout.api.auth import Principal
from turnout.api.deps import Services, admin, services, viewer
from turnout.api.views import token_json
from turnout.duration import parse_duration
from turnout.errors import BadRequest
from turnout.registry.names import check_name
from turnout.store.records import Permission, TokenRole
from turnout.types import JSON

router = APIRouter(tags=["auth"])
MAX_LIFETIME_S = 100 * 365 * 86400


class CreateToken(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    role: TokenRole
    permissions: list[Permission] = []
    """Extra permissions beyond the role (`register-code`)."""
    deployments: list[str] | None = None
    """The only deployments this token may call predictions on (default: all)."""
    expires_in: str | float | None = None
    """How long the token lives: `30d`, `12h`, `90m` or seconds (default: until revoked)."""


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
    who: Annotated[Principal, Depends(admin)],
) -> dict[str, JSON]:
    check_name(body.name, "token")
    for deployment in body.deployments or []:
        check_name(deployment, "deployment")
    token, record = svc.tokens.create(
        body.name,
        body.role,
        actor=who.name,
        permissions=frozenset(body.permissions),
        deployments=tuple(body.deployments) if body.deployments is not None else None,
        expires_at=_expiry(body.expires_in),
    )
    return {**token_json(record), "token": token}


def _expiry(expires_in: str | float | None) -> datetime | None:
    if expires_in is None:
        return None
    try:
        seconds = parse_duration(expires_in)
    except ValueError as exc:
        raise BadRequest(f"expires_in {exc}") from None
    if seconds > MAX_LIFETIME_S:
        raise BadRequest("expires_in must be at most 100 years; leave it out for no expiry")
    return datetime.now(UTC) + timedelta(seconds=seconds)


@router.delete("/tokens/{token_id}", status_code=204)
def revoke_token(
    token_id: int,
    svc: Annotated[Services, Depends(services)],
    who: Annotated[Principal, Depends(admin)],
) -> None:
    svc.tokens.revoke(token_id, who.name)
