"""A deployment's retrain policy: what data, which triggers, and what happens to the result.

YAML or a mapping, validated with readable errors like rollout plans. Durations are seconds
or text with a unit (`90s`, `15m`, `6h`, `7d`).

```yaml
data: {log: 30d}                 # or {path: data/, reference: seed.csv} or {sql: ..., url: ...}
target: churned                  # default: the version's training target, else `actual`
triggers:
  schedule: "0 3 * * *"          # cron, in UTC
  drift_psi: 0.2                 # any feature's PSI at or above this...
  drifted_features: 1            # ...or this many features judged drifted
  accuracy_below: 0.85
  accuracy_drop: 0.05            # below the version's registered `accuracy` metric by this
  new_actuals: 5000              # actuals received since the last retrain
  window: 24h                    # what drift and accuracy are computed over
  min_rows: 200                  # rows (or actuals) needed before drift/accuracy can fire
cooldown: 6h
timeout: 1h
holdout_fraction: 0.2
on_success: rollout              # or `register`
resources: {cpus: 2, memory_mb: 4096}   # reserved on a Ray cluster (TURNOUT_EXECUTOR=ray...)
```
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from croniter import croniter
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from turnout import redact
from turnout.duration import Duration, parse_duration
from turnout.lifecycle.plans import Count, Positive, Rate
from turnout.lifecycle.specs import SpecKind
from turnout.types import JSON


def _cron(value: str) -> str:
    if not croniter.is_valid(value):
        raise ValueError(
            f"{value!r} is not a cron expression (five fields: minute hour day month weekday, "
            "e.g. '0 3 * * *'; or @hourly, @daily, @weekly)"
        )
    return value


class _Section(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, allow_inf_nan=False, use_attribute_docstrings=True
    )


class DataSource(_Section):
    """Where a retrain's training rows come from: exactly one of `path`, `sql`, `log`."""

    path: str | None = None
    """A CSV or Parquet file, a folder of them, or a glob; `s3://bucket/prefix` too."""
    sql: str | None = None
    """A query whose result is the training table (needs `url`)."""
    url: str | None = None
    """The database URL the query runs against (any SQLAlchemy URL)."""
    log: Annotated[float, BeforeValidator(parse_duration)] | None = None
    """The deployment's own logged inputs joined with their actuals over this window
    (e.g. `30d`); the actual is the label."""
    reference: str | None = None
    """A file or folder appended to the rows (e.g. the original training set)."""
    max_rows: Count | None = None
    """Keep only the newest this many rows (after the reference is appended)."""

    @model_validator(mode="after")
    def _one_source(self) -> DataSource:
        given = [name for name in ("path", "sql", "log") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of path (files), sql (with url) or log (a window of "
                f"logged traffic with actuals); got {', '.join(given) or 'none'}"
            )
        if self.sql is not None and not self.url:
            raise ValueError("sql needs url: the database to run it against")
        if self.url is not None and self.sql is None:
            raise ValueError("url is only used with sql")
        return self


class Triggers(_Section):
    """When a retrain starts by itself. Each trigger left out is off; `turnout retrain NAME`
    always works."""

    schedule: Annotated[str, AfterValidator(_cron)] | None = None
    """Cron expression in UTC, e.g. `0 3 * * *` (every day at 03:00)."""
    drift_psi: Positive | None = None
    """Fires when any input feature's PSI reaches this (0.2 is a common alarm)."""
    drifted_features: Count | None = None
    """Fires when at least this many features are judged drifted (PSI and test agree)."""
    accuracy_below: Rate | None = None
    """Fires when the champion's live accuracy is below this."""
    accuracy_drop: Rate | None = None
    """Fires when the champion's live accuracy is this far below its registered `accuracy`
    metric (its validation score)."""
    new_actuals: Count | None = None
    """Fires when this many actuals arrived since the last retrain (or since the champion
    was registered)."""
    window: Duration = 86400.0
    """The span drift and accuracy are computed over."""
    min_rows: Count = 200
    """Logged rows (drift) or actuals (accuracy) needed before those triggers can fire."""

    @property
    def any(self) -> bool:
        return any(
            getattr(self, name) is not None
            for name in ("schedule", "drift_psi", "drifted_features", "accuracy_below",
                         "accuracy_drop", "new_actuals")
        )  # fmt: skip


class Resources(_Section):
    """A job's reservation on a cluster engine."""

    cpus: float = Field(default=1.0, gt=0, le=1024)
    memory_mb: Count | None = None


class RetrainPolicy(_Section):
    """When and how a deployment's champion is retrained, and what becomes of the result."""

    data: DataSource
    target: str | None = None
    """The label column; default: the version's training target, else `actual`."""
    triggers: Triggers = Field(default_factory=Triggers)
    cooldown: Duration = 21600.0
    """No trigger fires within this long after the last retrain started (manual ones
    excepted)."""
    timeout: Duration = 3600.0
    """A job running longer is stopped and fails."""
    holdout_fraction: float = 0.2
    """Share of the rows (the newest) kept out of training to score the new version and its
    parent on; 0 trains on everything and scores nothing."""
    min_rows: Count = 50
    """A job with fewer training rows fails instead of training."""
    on_success: Literal["rollout", "register"] = "rollout"
    """`rollout`: start a rollout of the new version with the deployment's plan;
    `register`: only register it."""
    check_every: Duration = 60.0
    """How often the controller evaluates the triggers."""
    resources: Resources = Field(default_factory=lambda: Resources())
    """What a job reserves where it runs (a Ray cluster); the local executor does not."""

    @field_validator("holdout_fraction")
    @classmethod
    def _fraction(cls, value: float) -> float:
        if not 0.0 <= value < 1.0:
            raise ValueError(f"must be at least 0 and below 1, not {value:g}")
        return value

    @classmethod
    def parse(cls, data: object) -> RetrainPolicy:
        """A policy from YAML text or an already parsed mapping; one BadRequest lists every
        problem with its place."""
        return POLICY_SPEC.parse(data)

    def to_dict(self) -> dict[str, JSON]:
        return self.model_dump(mode="json", exclude_none=True)


def redacted(value: Any) -> Any:
    """A policy, data source or job spec as shown to people: every database URL's password
    hidden, in its user part or its query string (the stored one keeps it, for the job that
    connects)."""
    return redact.deep(value)


POLICY_SPEC = SpecKind(
    model=RetrainPolicy,
    noun="retrain policy",
    short="retrain policy",
    keys="(data, target, triggers, cooldown, timeout, holdout_fraction, min_rows, on_success, "
    "check_every, resources)",
    root="policy",
    sections="must be a mapping of settings",
)
