"""Deployments: stable names whose routing changes only by appending revisions."""

from __future__ import annotations

from dataclasses import dataclass

from turnout.errors import BadRequest
from turnout.lifecycle.retire import check_routable
from turnout.registry.names import check_name
from turnout.registry.service import Registry
from turnout.store import metadata as md
from turnout.store.db import Database
from turnout.store.records import (
    DeploymentRecord,
    RevisionRecord,
    RoutingConfig,
    VersionRecord,
)
from turnout.types import JSON

MAX_TIMEOUT_MS = 600_000


@dataclass(frozen=True, kw_only=True)
class NewDeployment:
    name: str
    model: str
    version: int | None = None
    timeout_ms: int | None = None
    failover: int | None = None
    fallback: JSON = None
    has_fallback: bool = False
    log_payloads: float = 1.0
    keep_loaded: bool = False
    isolation: str | None = None
    max_replicas: int | None = None
    actor: str = "local"


@dataclass(frozen=True, slots=True)
class DeploymentView:
    deployment: DeploymentRecord
    revision: RevisionRecord


def check_fits(record: VersionRecord, budget_bytes: int | None) -> None:
    """Refuse a version whose model alone takes more than the whole model memory budget."""
    memory = record.memory_bytes
    if budget_bytes is None or memory is None or memory <= budget_bytes:
        return
    raise BadRequest(
        f"{record.ref} takes {memory / 2**20:.0f} MB loaded, more than the whole model memory "
        f"budget of {budget_bytes / 2**20:.0f} MB (TURNOUT_MODEL_MEMORY_MB)"
    )


def check_share(log_payloads: float) -> None:
    if not 0.0 <= log_payloads <= 1.0:
        raise BadRequest(f"log_payloads must be between 0 (none) and 1 (all), not {log_payloads:g}")


class Deployments:
    def __init__(
        self, db: Database, registry: Registry, *, model_memory_bytes: int | None = None
    ) -> None:
        self.db = db
        self.registry = registry
        self.model_memory_bytes = model_memory_bytes
        """The node's budget for loaded models: a version that alone exceeds it is refused."""

    def create(self, new: NewDeployment) -> DeploymentView:
        check_name(new.name, "deployment")
        version = new.version or self.registry.latest_version(new.model).version
        if new.timeout_ms is not None and not 0 < new.timeout_ms <= MAX_TIMEOUT_MS:
            raise BadRequest(f"timeout_ms must be between 1 and {MAX_TIMEOUT_MS}")
        if new.failover is not None and new.failover == version:
            raise BadRequest("the failover version must differ from the champion")
        check_share(new.log_payloads)
        for number in {version, new.failover} - {None}:
            assert number is not None
            record = self.registry.get_version(new.model, number)
            check_routable(record)
            self.registry.verify(record)
            check_fits(record, self.model_memory_bytes)
        config = RoutingConfig(
            champion=version,
            timeout_ms=new.timeout_ms,
            failover=new.failover,
            fallback=new.fallback,
            has_fallback=new.has_fallback,
            log_payloads=new.log_payloads,
            keep_loaded=new.keep_loaded,
            isolation=new.isolation,
            max_replicas=new.max_replicas,
        )
        with self.db.write() as conn:
            model = md.get_model(conn, new.model)
            deployment = md.insert_deployment(conn, new.name, model)
            revision = md.add_revision(
                conn,
                deployment,
                config,
                reason=f"create with {new.model}:{version}",
                actor=new.actor,
            )
            md.audit(
                conn,
                actor=new.actor,
                action="deployment.create",
                target=new.name,
                detail={"revision": revision.revision, "config": config.to_dict()},
            )
            deployment = md.get_deployment(conn, new.name)
        return DeploymentView(deployment, revision)

    def get(self, name: str) -> DeploymentView:
        with self.db.read() as conn:
            deployment = md.get_deployment(conn, name)
            return DeploymentView(
                deployment, md.get_revision(conn, deployment, deployment.active_revision)
            )

    def list_page(
        self, *, limit: int, offset: int = 0, prefix: str = ""
    ) -> tuple[list[DeploymentView], int]:
        """One page of deployments by name, and how many there are in all."""
        with self.db.read() as conn:
            rows = md.active_revisions(conn, limit=limit, offset=offset, prefix=prefix)
            return [DeploymentView(d, r) for d, r in rows], md.count_deployments(
                conn, prefix=prefix
            )

    def history(self, name: str) -> list[RevisionRecord]:
        with self.db.read() as conn:
            return md.list_revisions(conn, md.get_deployment(conn, name))
