"""Domain records read from the metadata DB; rows convert to these explicitly."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from turnout.types import JSON


class Role(StrEnum):
    """What a version does inside a revision."""

    CHAMPION = "champion"
    CHALLENGER = "challenger"
    SHADOW = "shadow"
    STANDBY = "standby"
    FAILOVER = "failover"
    FALLBACK = "fallback"
    DIRECT = "direct"
    """Called by version number, outside the traffic split: logged, read by no gate."""


class TokenRole(StrEnum):
    """Who may do what; each role includes the ones before it. `predictor` may only call
    prediction routes (when `TURNOUT_PREDICT_AUTH=required` asks for a token there)."""

    PREDICTOR = "predictor"
    VIEWER = "viewer"
    DEPLOYER = "deployer"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return list(TokenRole).index(self)

    def allows(self, needed: TokenRole) -> bool:
        return self.rank >= needed.rank


@dataclass(frozen=True, slots=True)
class StoredFile:
    path: str
    sha256: str
    size: int


@dataclass(frozen=True, slots=True)
class Artifact:
    """The files of a version: one file, or a folder of files, each content-addressed."""

    kind: str  # "file" or "dir"
    files: tuple[StoredFile, ...]

    def to_dict(self) -> dict[str, JSON]:
        return {
            "kind": self.kind,
            "files": [{"path": f.path, "sha256": f.sha256, "size": f.size} for f in self.files],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Artifact:
        files = tuple(StoredFile(f["path"], f["sha256"], int(f["size"])) for f in data["files"])
        return cls(kind=data["kind"], files=files)

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


@dataclass(frozen=True, slots=True)
class ModelRecord:
    id: int
    name: str
    description: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class VersionRecord:
    id: int
    model: str
    version: int
    flavor: str
    description: str
    artifact: Artifact
    signature: dict[str, JSON]
    metrics: dict[str, float]
    params: dict[str, str]
    tags: dict[str, str]
    training: dict[str, JSON] | None
    parent_version: int | None
    lineage: dict[str, JSON]
    created_by: str
    created_at: datetime
    pipeline: dict[str, JSON] | None = None
    """The training pipeline that made the version, for retraining: `{"kind": "import",
    "ref": "pkg.mod:fit"}` or `{"kind": "file", "name", "sha256", "size", "function"}`."""
    memory_bytes: int | None = None
    """Resident memory the loaded model took when registration checked it (None: unknown)."""
    archived_at: datetime | None = None
    """When the version was archived: still readable, never newly deployed or routed."""

    @property
    def ref(self) -> str:
        return f"{self.model}:{self.version}"


@dataclass(frozen=True, slots=True)
class RoutingConfig:
    """The routing of one revision: who answers, with which deadline and fallbacks."""

    champion: int
    timeout_ms: int | None = None
    failover: int | None = None
    fallback: JSON = None
    has_fallback: bool = False
    challengers: dict[int, float] = field(default_factory=dict)
    shadows: dict[int, float] = field(default_factory=dict)
    standby: int | None = None
    sticky_key: str | None = None
    """`header:NAME` or `field:NAME`: requests with the same key always get the same version."""
    log_payloads: float = 1.0
    """Share of requests whose inputs and outputs are logged (1: all, 0: none). Every answer
    is logged either way (id, version, role, latency, outcome)."""
    keep_loaded: bool = False
    """Pin the champion in the model host: never evicted, loaded ahead of traffic."""
    isolation: str | None = None
    """`shared` or `dedicated`: where the model host runs this deployment's versions (None:
    by flavor; code-bearing versions run alone)."""
    max_replicas: int | None = None
    """Runners a hot version of this deployment may use at most (None: the core count)."""

    def to_dict(self) -> dict[str, JSON]:
        return {
            "champion": self.champion,
            "timeout_ms": self.timeout_ms,
            "failover": self.failover,
            "fallback": self.fallback,
            "has_fallback": self.has_fallback,
            "challengers": {str(k): v for k, v in self.challengers.items()},
            "shadows": {str(k): v for k, v in self.shadows.items()},
            "standby": self.standby,
            "sticky_key": self.sticky_key,
            "log_payloads": self.log_payloads,
            "keep_loaded": self.keep_loaded,
            "isolation": self.isolation,
            "max_replicas": self.max_replicas,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RoutingConfig:
        return cls(
            champion=int(data["champion"]),
            timeout_ms=data.get("timeout_ms"),
            failover=data.get("failover"),
            fallback=data.get("fallback"),
            has_fallback=bool(data.get("has_fallback", False)),
            challengers={int(k): float(v) for k, v in (data.get("challengers") or {}).items()},
            shadows={int(k): float(v) for k, v in (data.get("shadows") or {}).items()},
            standby=data.get("standby"),
            sticky_key=data.get("sticky_key"),
            log_payloads=float(data.get("log_payloads", 1.0)),
            keep_loaded=bool(data.get("keep_loaded", False)),
            isolation=data.get("isolation"),
            max_replicas=data.get("max_replicas"),
        )

    def versions(self) -> set[int]:
        """Every version this revision needs loaded."""
        needed = {self.champion, *self.challengers, *self.shadows}
        needed |= {v for v in (self.failover, self.standby) if v is not None}
        return needed


@dataclass(frozen=True, slots=True)
class RevisionRecord:
    deployment: str
    revision: int
    config: RoutingConfig
    reason: str
    created_by: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class DeploymentRecord:
    id: int
    name: str
    model: str
    active_revision: int
    created_at: datetime
    updated_at: datetime


class Permission(StrEnum):
    """What a token may do beyond its role; admins may do everything."""

    REGISTER_CODE = "register-code"
    """Register versions that run their own code when loaded: the python flavor, MLflow
    models with code or a loader module, pickles, retrain pipelines."""


@dataclass(frozen=True, slots=True)
class TokenRecord:
    id: int
    name: str
    role: TokenRole
    created_at: datetime
    revoked_at: datetime | None
    permissions: frozenset[Permission] = frozenset()
    deployments: tuple[str, ...] | None = None
    """The deployments this token may call predictions on (None: all)."""
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class WorkerRecord:
    """One gateway worker process as it last reported itself."""

    id: str
    host: str
    pid: int
    started_at: datetime
    heartbeat_at: datetime
    revisions: dict[str, int]
    stats: list[dict[str, JSON]]
    errors: dict[str, dict[str, JSON]]
    """Per deployment: the revision this worker could not serve and why."""
    breakers: list[dict[str, JSON]] = field(default_factory=list)
    """Circuit breaker state per model version in this worker."""
    logging: dict[str, JSON] = field(default_factory=dict)
    """This worker's prediction logger: rows buffered, written, dropped, last error."""


class RolloutState(StrEnum):
    """Where a rollout is; `lifecycle.transitions` says which moves it may make."""

    RUNNING = "running"
    WAITING_APPROVAL = "waiting_approval"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ABORTED = "aborted"
    SUPERSEDED = "superseded"
    ROLLED_BACK = "rolled_back"


ACTIVE_ROLLOUT_STATES = (RolloutState.RUNNING, RolloutState.WAITING_APPROVAL)
"""A deployment has at most one rollout in one of these states."""


@dataclass(frozen=True, slots=True)
class RolloutRecord:
    """One version's journey into production for one deployment."""

    id: int
    deployment: str
    version: int
    plan: dict[str, JSON]
    state: RolloutState
    step: str
    """The current step of the plan, e.g. `warmup`, `challenge:10`, `bake`."""
    step_started_at: datetime
    base_revision: int
    """The deployment's revision when the rollout started: what `abort` goes back to."""
    state_detail: dict[str, JSON]
    """What the controller keeps between looks: sequential test state, last verdicts,
    the revision before promotion, the champion's accuracy before promotion."""
    reason: str
    created_by: str
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_ROLLOUT_STATES


class JobState(StrEnum):
    """Where a retrain job is; `lifecycle.transitions` says which moves it may make."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE_JOB_STATES = (JobState.QUEUED, JobState.RUNNING)
FINISHED_JOB_STATES = (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


@dataclass(frozen=True, slots=True)
class JobRecord:
    """One retrain job of one deployment: what it was asked to do and how far it got."""

    id: int
    kind: str
    """`retrain`."""
    deployment: str
    model: str
    parent_version: int
    """The version retrained: its pipeline and params are reused."""
    trigger: str
    """manual | schedule | drift | accuracy | actuals."""
    trigger_detail: dict[str, JSON]
    state: JobState
    spec: dict[str, JSON]
    """Everything the job needs, fixed when it was created (see `lifecycle.retrain.job`)."""
    progress: float
    message: str
    """The current stage while running; why it failed or was cancelled after."""
    result: dict[str, JSON]
    """The new version, data fingerprint, rows and metrics once it succeeded, and the
    rollout started with it."""
    host: str | None
    pid: int | None
    cancel_requested: bool
    created_by: str
    created_at: datetime
    started_at: datetime | None
    heartbeat_at: datetime | None
    finished_at: datetime | None

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_JOB_STATES

    def to_dict(self) -> dict[str, JSON]:
        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value is not None else None

        return {
            "id": self.id, "kind": self.kind, "deployment": self.deployment,
            "model": self.model, "parent_version": self.parent_version,
            "trigger": self.trigger, "trigger_detail": self.trigger_detail,
            "state": self.state.value, "spec": self.spec, "progress": self.progress,
            "message": self.message, "result": self.result, "host": self.host,
            "pid": self.pid, "cancel_requested": self.cancel_requested,
            "created_by": self.created_by, "created_at": iso(self.created_at),
            "started_at": iso(self.started_at), "heartbeat_at": iso(self.heartbeat_at),
            "finished_at": iso(self.finished_at),
        }  # fmt: skip
