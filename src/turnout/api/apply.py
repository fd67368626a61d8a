"""`/api/v1/apply`: bring a deployment to what its spec says (JSON, or YAML text)."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request

from turnout.api.auth import Principal
from turnout.api.deps import Services, deployer, services
from turnout.errors import BadRequest
from turnout.lifecycle.apply import Applier
from turnout.types import JSON

router = APIRouter(tags=["deployments"])

YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")


async def spec_body(request: Request) -> Any:
    """The spec as sent: YAML text is handed on as text, to be parsed with the spec."""
    body = await request.body()
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type in YAML_TYPES:
        try:
            return body.decode()
        except UnicodeDecodeError:
            raise BadRequest("the spec is not UTF-8 text") from None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(
            f"the spec is not valid JSON ({exc}); send YAML with content-type application/yaml"
        ) from None


def applier(svc: Annotated[Services, Depends(services)]) -> Applier:
    return Applier(svc.deployments, svc.routing, svc.rollouts, svc.deployments.db, svc.retraining)


@router.post(
    "/apply",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"type": "object"}},
                "application/yaml": {"schema": {"type": "string"}},
            },
        }
    },
)
def apply(
    who: Annotated[Principal, Depends(deployer)],
    spec: Annotated[Any, Depends(spec_body)],
    service: Annotated[Applier, Depends(applier)],
) -> dict[str, JSON]:
    """Create the deployment, or change only the settings that differ from the spec; the
    same spec applied twice changes nothing."""
    return service.apply(spec, actor=who.name)
