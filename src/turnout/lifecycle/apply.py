"""Declarative deployments: a spec says what a deployment should be, and applying it creates
the deployment or changes only what differs, so applying the same spec twice changes nothing.

A spec, in YAML (or the same mapping as JSON)::

    deployment: churn-prod   # the deployment's name (required)
    model: churn             # the model it serves (required; it never changes)
    version: 3               # the champion; the latest version when left out. For an existing
                             # deployment, another version starts a rollout with the plan
                             # below, or is refused when there is none
    timeout_ms: 200          # request deadline; null or left out: none
    failover: 2              # version answering when the champion fails; null: none
    fallback: 0              # value returned when no model answers; left out: none
                             # (`fallback: null` makes null the fallback value)
    log_payloads: all        # whose inputs and outputs are logged: all, none or a share 0..1
    rollout:                 # optional: the plan `turnout rollout start` follows when given
      warmup: {min_requests: 200}   # none, and that a changed `version` starts with
      bake: {duration_s: 600}
    retrain:                 # optional: the retrain policy (see lifecycle/retrain/policy.py)
      data: {log: 30d}
      triggers: {drift_psi: 0.2, accuracy_below: 0.85}

Every setting the spec leaves out takes its default: the spec is the whole desired state.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
)
from pydantic_core import ErrorDetails

from turnout.errors import BadRequest
from turnout.lifecycle.deployments import MAX_TIMEOUT_MS, Deployments, NewDeployment
from turnout.lifecycle.plans import Plan
from turnout.lifecycle.retrain.policy import RetrainPolicy
from turnout.lifecycle.retrain.service import Retraining
from turnout.lifecycle.rollouts import Rollouts
from turnout.lifecycle.routing import Routing, settings_changed
from turnout.lifecycle.specs import SpecKind
from turnout.store import metadata as md
from turnout.store import rollouts as rs
from turnout.store.db import Database
from turnout.store.records import DeploymentRecord, RoutingConfig
from turnout.types import JSON

MAX_ERRORS_SHOWN = 5
LOG_WORDS = {"all": 1.0, "none": 0.0}


def _log_word(value: Any) -> Any:
    if isinstance(value, str) and value in LOG_WORDS:
        return LOG_WORDS[value]
    if value is None or isinstance(value, bool | str):
        raise ValueError(f"must be all, none or a share between 0 and 1, not {value!r}")
    return value


def _share(value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"must be all, none or a share between 0 and 1, not {value:g}")
    return value


LogShare = Annotated[float, BeforeValidator(_log_word), AfterValidator(_share)]
Version = Annotated[int, Field(ge=1)]


class DeploymentSpec(BaseModel):
    """What one deployment should be; see the module docstring for the YAML form."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, allow_inf_nan=False, use_attribute_docstrings=True
    )

    deployment: str
    """The deployment's name."""
    model: str
    """The model it serves; a deployment never changes model."""
    version: Version | None = None
    """The champion; None: the latest version at creation, the current champion after."""
    timeout_ms: Annotated[int, Field(ge=1, le=MAX_TIMEOUT_MS)] | None = None
    """Request deadline; None: no deadline."""
    failover: Version | None = None
    """Version that answers when the champion fails or is too slow; None: none."""
    fallback: JSON = None
    """Value returned when no model answers; a fallback exists only when the key is given."""
    log_payloads: LogShare = 1.0
    """Share of requests whose inputs and outputs are logged."""
    rollout: Plan | None = None
    """The plan rollouts of this deployment follow when started without one."""
    retrain: RetrainPolicy | None = None
    """When and how the champion is retrained; None: no automatic retraining."""

    @property
    def has_fallback(self) -> bool:
        return "fallback" in self.model_fields_set


def parse_spec(data: object) -> DeploymentSpec:
    """A spec from YAML text or an already parsed mapping; every problem in one BadRequest."""
    return DEPLOYMENT_SPEC.parse(data)


def _rollout_problem(detail: ErrorDetails) -> str | None:
    if detail["type"] == "model_type" and tuple(detail["loc"]) == ("rollout",):
        return "must be a plan (validate, warmup, challenge, approve, bake) or null"
    return None


DEPLOYMENT_SPEC = SpecKind(
    model=DeploymentSpec,
    noun="deployment spec",
    short="spec",
    keys="(deployment, model, version, timeout_ms, failover, fallback, log_payloads, rollout, "
    "retrain)",
    empty="the spec is empty; give at least `deployment` and `model`",
    special=_rollout_problem,
)


class Applier:
    """Brings a deployment to what its spec says, writing only what differs."""

    def __init__(
        self,
        deployments: Deployments,
        routing: Routing,
        rollouts: Rollouts,
        db: Database,
        retraining: Retraining | None = None,
    ) -> None:
        self.deployments = deployments
        self.routing = routing
        self.rollouts = rollouts
        self.db = db
        self.retraining = retraining

    def apply(self, spec: Mapping[str, Any] | str, *, actor: str) -> dict[str, JSON]:
        """Create or update the deployment. The report says what changed (`created`, the
        names of `changed` settings), the active `revision`, and the id of the `rollout`
        of the spec's version that is running, if any."""
        parsed = parse_spec(spec)
        self._check_holdout(parsed)
        with self.db.read() as conn:
            existing = md.find_deployment(conn, parsed.deployment)
        if existing is None:
            return self._create(parsed, actor=actor)
        return self._update(existing, parsed, actor=actor)

    def _check_holdout(self, spec: DeploymentSpec) -> None:
        """A holdout file outside the server's data roots is refused before a rollout looks
        for it, so the answer says nothing about which files exist on the server (the roots
        are the ones retrain data is held to)."""
        access = self.retraining.access if self.retraining is not None else None
        validation = spec.rollout.validation if spec.rollout is not None else None
        if access is not None and validation is not None and validation.holdout is not None:
            access.check_path(validation.holdout, what="rollout.validate.holdout")

    def _create(self, spec: DeploymentSpec, *, actor: str) -> dict[str, JSON]:
        self._check_model(spec.model)
        if spec.version is None:
            champion = self.deployments.registry.latest_version(spec.model).version
        else:
            champion = self._check_version(spec.model, spec.version, "version")
        self._check_failover(spec, champion)
        view = self.deployments.create(
            NewDeployment(
                name=spec.deployment,
                model=spec.model,
                version=champion,
                timeout_ms=spec.timeout_ms,
                failover=spec.failover,
                fallback=spec.fallback,
                has_fallback=spec.has_fallback,
                log_payloads=spec.log_payloads,
                actor=actor,
            )
        )
        if spec.rollout is not None:
            self._store_plan(spec, actor=actor)
        if spec.retrain is not None:
            self._store_policy(spec, actor=actor)
        revision = view.revision.revision
        acknowledged, _ = self.routing.wait_for_workers(spec.deployment, revision)
        return _report(spec, changed=[], revision=revision, acknowledged=acknowledged)

    def _update(
        self, existing: DeploymentRecord, spec: DeploymentSpec, *, actor: str
    ) -> dict[str, JSON]:
        name = spec.deployment
        if spec.model != existing.model:
            raise BadRequest(
                f"invalid spec: model: {name!r} serves model {existing.model!r}; a deployment "
                "never changes model (create another deployment)"
            )
        current = self.routing.current(name)
        target = None if spec.version == current.champion else spec.version
        if target is not None:
            self._check_version(spec.model, target, "version")
            if spec.rollout is None:
                raise BadRequest(
                    f"{name!r} serves version {current.champion}, the spec says {target}: "
                    f"add a `rollout` plan to the spec to move {target} in through its gates, "
                    f"or run `turnout rollout start {name} --version {target}` or "
                    f"`turnout promote {name} --version {target}`"
                )
        self._check_failover(spec, current.champion)

        changed = settings_changed(current, _desired(current, spec))
        revision, acknowledged = self._active_revision(name), None
        if changed:
            applied = self.routing.configure(
                name,
                timeout_ms=spec.timeout_ms,
                failover=spec.failover,
                fallback=spec.fallback,
                has_fallback=spec.has_fallback,
                log_payloads=spec.log_payloads,
                actor=actor,
            )
            revision, acknowledged = applied.revision.revision, applied.acknowledged
        if self._store_plan(spec, actor=actor):
            changed.append("rollout")
        if self._store_policy(spec, actor=actor):
            changed.append("retrain")
        rollout = None
        if target is not None:
            rollout, started = self._roll_out(spec, target, actor=actor)
            if started:
                changed.append("version")
        return _report(
            spec,
            created=False,
            changed=changed,
            revision=revision,
            rollout=rollout,
            acknowledged=acknowledged,
        )

    # -- helpers ----------------------------------------------------------------------------

    def _check_model(self, model: str) -> None:
        with self.db.read() as conn:
            if md.find_model(conn, model) is None:
                raise BadRequest(f"invalid spec: model: no model named {model!r} is registered")

    def _check_version(self, model: str, version: int, field: str) -> int:
        with self.db.read() as conn:
            if md.find_version(conn, model, version) is None:
                raise BadRequest(f"invalid spec: {field}: {model}:{version} is not registered")
        return version

    def _check_failover(self, spec: DeploymentSpec, champion: int) -> None:
        if spec.failover is None:
            return
        if spec.failover == champion:
            raise BadRequest(
                f"invalid spec: failover: version {champion} is the champion; the failover "
                "version must be another one"
            )
        self._check_version(spec.model, spec.failover, "failover")

    def _active_revision(self, name: str) -> int:
        with self.db.read() as conn:
            return md.get_deployment(conn, name).active_revision

    def _store_plan(self, spec: DeploymentSpec, *, actor: str) -> bool:
        """Keep the spec's rollout plan with the deployment; False when it already was."""
        plan = spec.rollout.to_dict() if spec.rollout is not None else None
        with self.db.write() as conn:
            if md.get_rollout_plan(conn, spec.deployment) == plan:
                return False
            md.set_rollout_plan(conn, spec.deployment, plan)
            md.audit(
                conn,
                actor=actor,
                action="deployment.plan",
                target=spec.deployment,
                detail={"plan": plan},
            )
        return True

    def _store_policy(self, spec: DeploymentSpec, *, actor: str) -> bool:
        """Keep the spec's retrain policy with the deployment; False when it already was."""
        policy = spec.retrain.to_dict() if spec.retrain is not None else None
        with self.db.read() as conn:
            if md.get_retrain_policy(conn, spec.deployment) == policy:
                return False
        if self.retraining is None:
            raise BadRequest("retraining is not available on this server")
        if policy is None:
            self.retraining.clear_policy(spec.deployment, actor=actor)
        else:
            self.retraining.set_policy(spec.deployment, policy, actor=actor)
        return True

    def _roll_out(self, spec: DeploymentSpec, version: int, *, actor: str) -> tuple[int, bool]:
        """The id of the running rollout of `version`, started now unless one already was."""
        with self.db.read() as conn:
            running = rs.active_rollout(conn, spec.deployment)
        if running is not None and running.version == version:
            return running.id, False
        assert spec.rollout is not None
        view = self.rollouts.start(spec.deployment, version, spec.rollout.to_dict(), actor=actor)
        return view.rollout.id, True


def _desired(current: RoutingConfig, spec: DeploymentSpec) -> RoutingConfig:
    return RoutingConfig(
        champion=current.champion,
        timeout_ms=spec.timeout_ms,
        failover=spec.failover,
        fallback=spec.fallback if spec.has_fallback else None,
        has_fallback=spec.has_fallback,
        log_payloads=spec.log_payloads,
    )


def _report(
    spec: DeploymentSpec,
    *,
    created: bool = True,
    changed: list[str],
    revision: int,
    rollout: int | None = None,
    acknowledged: bool | None,
) -> dict[str, JSON]:
    """`acknowledged`: whether every live gateway serves `revision`; None when the apply
    wrote no revision."""
    return {
        "deployment": spec.deployment,
        "created": created,
        "changed": changed,
        "revision": revision,
        "rollout": rollout,
        "acknowledged": acknowledged,
    }
