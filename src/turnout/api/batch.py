"""`/api/v1/deployments/{name}/batch` and `/api/v1/jobs/{id}/output`: batch scoring jobs,
and their output as one Parquet file."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import iterate_in_threadpool

from turnout.api.auth import Principal
from turnout.api.deps import Services, deployer, services, viewer
from turnout.api.retrain import job_json
from turnout.lifecycle.batch import MAX_CHUNK_ROWS, stream_output
from turnout.types import JSON

router = APIRouter(tags=["batch"])

MAX_ID = 2**31 - 1
"""Versions and job ids are 32-bit in the metadata DB."""


class StartBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input: str | None = Field(
        default=None,
        description="A CSV/Parquet file, folder or glob on the server, under a data root "
        "(upload your own files with POST /api/v1/data first). Optional with `resume`.",
    )
    version: int | None = Field(
        default=None, ge=1, le=MAX_ID, description="Score with this version, not the champion."
    )
    chunk_rows: int | None = Field(default=None, ge=1, le=MAX_CHUNK_ROWS)
    resume: int | None = Field(
        default=None,
        ge=1,
        le=MAX_ID,
        description="An earlier batch job to continue: its finished chunks are kept.",
    )


@router.post("/deployments/{name}/batch", status_code=202)
def start_batch(
    name: str,
    body: StartBatch,
    svc: Annotated[Services, Depends(services)],
    who: Annotated[Principal, Depends(deployer)],
) -> dict[str, JSON]:
    """Queue a batch scoring job (the controller starts it within one look)."""
    job = svc.retraining.batch(
        name,
        actor=who.name,
        input=body.input,
        version=body.version,
        chunk_rows=body.chunk_rows,
        resume=body.resume,
    )
    return job_json(job)


@router.get("/jobs/{job_id}/output")
def batch_output(
    job_id: int,
    svc: Annotated[Services, Depends(services)],
    _: Annotated[Principal, Depends(viewer)],
) -> StreamingResponse:
    """A succeeded batch job's output: its part files as one Parquet file."""
    parts = svc.retraining.batch_output(job_id)
    headers = {"content-disposition": f'attachment; filename="batch-{job_id}.parquet"'}
    return StreamingResponse(
        iterate_in_threadpool(stream_output(parts)),
        media_type="application/vnd.apache.parquet",
        headers=headers,
    )
