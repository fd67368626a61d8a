"""Records as the JSON the API returns (and the CLI prints with --json)."""

from __future__ import annotations

from datetime import UTC, datetime

from turnout.lifecycle.deployments import DeploymentView
from turnout.lifecycle.routing import Applied
from turnout.store.records import (
    ModelRecord,
    RevisionRecord,
    TokenRecord,
    VersionRecord,
    WorkerRecord,
)
from turnout.types import JSON


def model_json(model: ModelRecord, n_versions: int, latest: int | None) -> dict[str, JSON]:
    return {
        "name": model.name,
        "description": model.description,
        "versions": n_versions,
        "latest_version": latest,
        "created_at": model.created_at.isoformat(),
    }


def version_json(record: VersionRecord) -> dict[str, JSON]:
    return {
        "model": record.model,
        "version": record.version,
        "ref": record.ref,
        "flavor": record.flavor,
        "description": record.description,
        "files": record.artifact.to_dict()["files"],
        "artifact_kind": record.artifact.kind,
        "size_bytes": record.artifact.size,
        "memory_bytes": record.memory_bytes,
        "signature": record.signature,
        "metrics": record.metrics,
        "params": record.params,
        "tags": record.tags,
        "training": record.training,
        "parent_version": record.parent_version,
        "lineage": record.lineage,
        "pipeline": record.pipeline,
        "created_by": record.created_by,
        "created_at": record.created_at.isoformat(),
        "archived_at": record.archived_at.isoformat() if record.archived_at else None,
    }


def revision_json(revision: RevisionRecord) -> dict[str, JSON]:
    return {
        "revision": revision.revision,
        "config": revision.config.to_dict(),
        "reason": revision.reason,
        "created_by": revision.created_by,
        "created_at": revision.created_at.isoformat(),
    }


def deployment_json(view: DeploymentView) -> dict[str, JSON]:
    config = view.revision.config
    return {
        "name": view.deployment.name,
        "model": view.deployment.model,
        "champion": config.champion,
        "revision": view.revision.revision,
        "timeout_ms": config.timeout_ms,
        "failover": config.failover,
        "fallback": config.fallback if config.has_fallback else None,
        "challengers": {str(k): v for k, v in config.challengers.items()},
        "shadows": {str(k): v for k, v in config.shadows.items()},
        "config": config.to_dict(),
        "created_at": view.deployment.created_at.isoformat(),
        "updated_at": view.deployment.updated_at.isoformat(),
        "endpoints": {
            "oip": f"/v2/models/{view.deployment.name}/infer",
            "native": f"/v1/deployments/{view.deployment.name}/predict",
        },
    }


def token_json(record: TokenRecord) -> dict[str, JSON]:
    return {
        "id": record.id,
        "name": record.name,
        "role": record.role.value,
        "permissions": sorted(p.value for p in record.permissions),
        "deployments": list(record.deployments) if record.deployments is not None else None,
        "created_at": record.created_at.isoformat(),
        "expires_at": record.expires_at.isoformat() if record.expires_at else None,
        "revoked_at": record.revoked_at.isoformat() if record.revoked_at else None,
    }


def worker_json(worker: WorkerRecord, deployment: str) -> dict[str, JSON]:
    age = (datetime.now(UTC) - worker.heartbeat_at).total_seconds()
    return {
        "id": worker.id,
        "host": worker.host,
        "pid": worker.pid,
        "revision": worker.revisions.get(deployment),
        "heartbeat_age_s": round(age, 3),
        "error": (worker.errors.get(deployment) or {}).get("message"),
    }


def applied_json(applied: Applied, deployment: str) -> dict[str, JSON]:
    return {
        **revision_json(applied.revision),
        "deployment": deployment,
        "acknowledged": applied.acknowledged,
        "workers": [worker_json(w, deployment) for w in applied.workers],
    }
