"""What a retrain job is asked to do, fixed when the job is created.

The spec holds everything the job process needs, so a job re-run later, or on another
machine, does the same thing even if the policy or the deployment changed since.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from turnout.types import JSON


@dataclass(frozen=True)
class JobSpec:
    deployment: str
    model: str
    parent_version: int
    flavor: str
    """The parent's flavor: the new version is saved and registered in it."""
    pipeline: dict[str, JSON]
    """The parent's pipeline record (`VersionRecord.pipeline`), reused as is."""
    params: dict[str, str]
    """The parent's params, passed to the pipeline unchanged."""
    data: dict[str, JSON]
    """The policy's data source (`DataSource.model_dump(mode="json")`)."""
    target: str
    """The label column of the training table."""
    columns: list[str]
    """The parent's input columns, in order (its signature's names)."""
    holdout_fraction: float = 0.2
    min_rows: int = 50
    timeout_s: float = 3600.0
    on_success: str = "rollout"
    cpus: float = 1.0
    """Reserved for the job on a cluster engine (the Ray executor)."""
    memory_mb: int | None = None
    tags: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, JSON]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobSpec:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})
