"""`/api/v1/deployments/{name}/retrain...` and `/api/v1/jobs`: retrain policies, manual
retrains, and the jobs that run them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field

from turnout.api.auth import Principal
from turnout.api.deps import Services, deployer, services, viewer
from turnout.lifecycle.retrain.policy import redacted
from turnout.store.records import JobRecord, JobState
from turnout.types import JSON

router = APIRouter(tags=["retraining"])

JOB_STATES = tuple(state.value for state in JobState)


def job_json(job: JobRecord) -> dict[str, JSON]:
    """A job as shown: a SQL source's password hidden."""
    shown: dict[str, JSON] = redacted(job.to_dict())
    return shown


class SetPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    policy: dict[str, Any] | str = Field(description="The policy as a mapping or YAML text.")


class StartRetrain(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data: dict[str, Any] | None = Field(
        default=None,
        description="A data source overriding the policy's (path, sql + url, or log); "
        "required when the deployment has no policy.",
    )
    reason: str = ""


@router.put("/deployments/{name}/retrain-policy")
def set_policy(
    name: str,
    body: SetPolicy,
    svc: Annotated[Services, Depends(services)],
    who: Annotated[Principal, Depends(deployer)],
) -> dict[str, JSON]:
    """Set when and how the deployment's champion is retrained."""
    return svc.retraining.set_policy(name, body.policy, actor=who.name)


@router.get("/deployments/{name}/retrain-policy")
def get_policy(
    name: str, svc: Annotated[Services, Depends(services)], _: Annotated[Principal, Depends(viewer)]
) -> dict[str, JSON]:
    """The policy, what its last trigger check saw, and the job running now if any."""
    return svc.retraining.policy(name)


@router.delete("/deployments/{name}/retrain-policy", status_code=204)
def clear_policy(
    name: str,
    svc: Annotated[Services, Depends(services)],
    who: Annotated[Principal, Depends(deployer)],
) -> None:
    svc.retraining.clear_policy(name, actor=who.name)


@router.post("/deployments/{name}/retrain", status_code=202)
def start_retrain(
    name: str,
    svc: Annotated[Services, Depends(services)],
    who: Annotated[Principal, Depends(deployer)],
    body: StartRetrain | None = None,
) -> dict[str, JSON]:
    """Queue a retrain of the champion now (the controller starts it within one look)."""
    body = body or StartRetrain()
    detail: dict[str, JSON] = {"reason": body.reason} if body.reason else {}
    job = svc.retraining.retrain(name, actor=who.name, detail=detail, data=body.data)
    return job_json(job)


@router.get("/jobs")
def list_jobs(
    svc: Annotated[Services, Depends(services)],
    _: Annotated[Principal, Depends(viewer)],
    deployment: str | None = None,
    state: Annotated[str | None, Query(pattern="^(" + "|".join(JOB_STATES) + ")$")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, JSON]]:
    """Jobs, newest first."""
    jobs = svc.retraining.jobs(deployment=deployment, state=state, limit=limit)
    return [job_json(job) for job in jobs]


@router.get("/jobs/{job_id}")
def show_job(
    job_id: int,
    svc: Annotated[Services, Depends(services)],
    _: Annotated[Principal, Depends(viewer)],
) -> dict[str, JSON]:
    return job_json(svc.retraining.job(job_id))


@router.get("/jobs/{job_id}/logs", response_class=PlainTextResponse)
def job_logs(
    job_id: int,
    svc: Annotated[Services, Depends(services)],
    _: Annotated[Principal, Depends(viewer)],
    tail_bytes: Annotated[int, Query(ge=1, le=16 * 1024 * 1024)] = 64 * 1024,
) -> str:
    """The end of what the job's process printed."""
    return svc.retraining.logs(job_id, tail_bytes=tail_bytes)


@router.post("/jobs/{job_id}/cancel")
def cancel_job(
    job_id: int,
    svc: Annotated[Services, Depends(services)],
    who: Annotated[Principal, Depends(deployer)],
) -> dict[str, JSON]:
    """Stop a job: a queued one at once, a running one within one controller look."""
    return job_json(svc.retraining.cancel(job_id, actor=who.name))
