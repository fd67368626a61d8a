"""Rollouts: one version's journey into production for one deployment, step by step.

Starting, approving and aborting are recorded here; the controller (`controller.py`) moves a
running rollout from step to step as the evidence comes in.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection

from turnout.errors import BadRequest, Conflict, Forbidden, NotFound
from turnout.lifecycle.detail import RolloutDetail
from turnout.lifecycle.notify import Notifier, event_body
from turnout.lifecycle.plans import DEFAULT_PLAN, Plan
from turnout.lifecycle.retire import check_routable
from turnout.lifecycle.routing import RouteChange, Routing
from turnout.lifecycle.transitions import check_rollout_move
from turnout.registry.service import Registry
from turnout.store import metadata as md
from turnout.store import rollouts as rs
from turnout.store.db import Database
from turnout.store.records import RolloutRecord, RolloutState
from turnout.types import JSON


@dataclass(frozen=True, slots=True)
class RolloutView:
    rollout: RolloutRecord
    events: list[dict[str, JSON]]

    def to_dict(self) -> dict[str, JSON]:
        r = self.rollout
        plan = Plan.model_validate(r.plan)
        return {
            "id": r.id,
            "deployment": r.deployment,
            "version": r.version,
            "state": r.state.value,
            "step": r.step,
            "steps": plan.steps(),
            "step_started_at": r.step_started_at.isoformat(),
            "base_revision": r.base_revision,
            "verdicts": dict(RolloutDetail.from_dict(r.state_detail).verdicts),
            "reason": r.reason,
            "plan": r.plan,
            "created_by": r.created_by,
            "created_at": r.created_at.isoformat(),
            "finished_at": r.finished_at.isoformat() if r.finished_at else None,
            "events": self.events,
        }


def parse_plan(plan: dict[str, Any] | None) -> Plan:
    if plan is None:
        return DEFAULT_PLAN
    return Plan.parse(plan)


class Rollouts:
    def __init__(
        self,
        db: Database,
        registry: Registry,
        routing: Routing,
        *,
        notifier: Notifier | None = None,
    ) -> None:
        """`notifier` tells the webhook about starts, approvals and aborts (the controller
        tells it about every other move)."""
        self.db = db
        self.registry = registry
        self.routing = routing
        self.notifier = notifier or Notifier(None)

    def start(
        self, deployment: str, version: int, plan: dict[str, Any] | None, *, actor: str
    ) -> RolloutView:
        """Begin a rollout of `version`; a running rollout of the deployment is superseded
        (its routing is replaced when the new one takes its first step). Without a plan, the
        deployment's own (`turnout apply`) is followed, else the default one."""
        if plan is None:
            with self.db.read() as conn:
                plan = md.get_rollout_plan(conn, deployment)
        parsed = parse_plan(plan)
        with self.db.read() as conn:
            record = md.get_deployment(conn, deployment)
            revision = md.get_revision(conn, record, record.active_revision)
        model = record.model
        candidate = self.registry.get_version(model, version)
        check_routable(candidate)
        self.registry.verify(candidate)
        if version == revision.config.champion:
            raise Conflict(f"{model}:{version} is already the champion of {deployment!r}")
        holdout = parsed.validation.holdout if parsed.validation is not None else None
        if holdout is not None and not Path(holdout).expanduser().is_file():
            raise BadRequest(
                f"validate.holdout: {holdout} is not a file on the server; give a path the "
                "server can read (CSV or Parquet with the model's columns and the label)"
            )
        steps = parsed.steps()
        with self.db.write() as conn:
            previous = rs.active_rollout(conn, deployment)
            if previous is not None:
                rs.add_event(conn, previous, kind="superseded", detail={"by_version": version})
                self._write(conn, previous, state=RolloutState.SUPERSEDED,
                            reason=f"superseded by {model}:{version}")  # fmt: skip
            rollout = rs.insert_rollout(
                conn,
                deployment=deployment,
                version=version,
                plan=parsed.to_dict(),
                step=steps[0],
                base_revision=revision.revision,
                actor=actor,
            )
            rs.add_event(conn, rollout, kind="started", detail={"by": actor, "steps": steps})
            md.audit(
                conn,
                actor=actor,
                action="rollout.start",
                target=deployment,
                detail={"rollout": rollout.id, "version": version},
            )
        self.notifier.send(event_body(rollout, "started", {"by": actor, "steps": steps}))
        return self.status(deployment)

    def status(self, deployment: str) -> RolloutView:
        with self.db.read() as conn:
            md.get_deployment(conn, deployment)
            rollout = rs.latest_rollout(conn, deployment)
            if rollout is None:
                raise NotFound(f"deployment {deployment!r} has no rollout")
            return RolloutView(rollout, rs.list_events(conn, rollout))

    def history(self, deployment: str, *, limit: int = 1000) -> list[dict[str, JSON]]:
        """Every step, verdict, approval and abort of the deployment's rollouts, oldest
        first."""
        with self.db.read() as conn:
            md.get_deployment(conn, deployment)
            return rs.deployment_events(conn, deployment, limit=limit)

    def _active(self, deployment: str) -> RolloutRecord:
        with self.db.read() as conn:
            md.get_deployment(conn, deployment)
            rollout = rs.active_rollout(conn, deployment)
        if rollout is None:
            raise Conflict(f"deployment {deployment!r} has no rollout in progress")
        return rollout

    def approve(self, deployment: str, *, actor: str) -> RolloutView:
        rollout = self._active(deployment)
        if rollout.state != RolloutState.WAITING_APPROVAL:
            raise Conflict(
                f"the rollout of {deployment!r} is at step {rollout.step!r}, not waiting for "
                "approval"
            )
        plan = Plan.model_validate(rollout.plan)
        if plan.approve is not None and plan.approve.separate and actor == rollout.created_by:
            raise Forbidden(
                f"{actor!r} started this rollout and may not approve it too; another token "
                "must approve (or the plan says approve: {separate: false})"
            )
        steps = plan.steps()
        following = steps[steps.index(rollout.step) + 1]
        with self.db.write() as conn:
            rs.add_event(conn, rollout, kind="approved", detail={"by": actor})
            self._write(conn, rollout, state=RolloutState.RUNNING, step=following)
            md.audit(conn, actor=actor, action="rollout.approve", target=deployment,
                     detail={"rollout": rollout.id, "version": rollout.version})  # fmt: skip
        self.notifier.send(event_body(rollout, "approved", {"by": actor}))
        return self.status(deployment)

    def abort(self, deployment: str, *, actor: str, reason: str = "") -> RolloutView:
        """Stop the rollout; live routing goes back to the champion it started from at once."""
        rollout = self._active(deployment)
        why = reason or f"aborted by {actor}"
        # marked first, so the controller stops routing for it before routing is restored
        with self.db.write() as conn:
            rs.add_event(conn, rollout, kind="aborted", detail={"by": actor, "reason": why})
            self._write(conn, rollout, state=RolloutState.ABORTED, reason=why)
            md.audit(conn, actor=actor, action="rollout.abort", target=deployment,
                     detail={"rollout": rollout.id, "version": rollout.version})  # fmt: skip
        self.notifier.send(event_body(rollout, "aborted", {"by": actor, "reason": why}))
        self.restore(rollout, actor=actor)
        return self.status(deployment)

    # -- the controller's moves ------------------------------------------------------------

    def keep_test(self, rollout: RolloutRecord, step: str, state: dict[str, JSON]) -> RolloutRecord:
        """Store the sequential test's state for `step`; returns the rollout as now stored."""
        detail = RolloutDetail.from_dict(rollout.state_detail).with_test(step, state)
        with self.db.write() as conn:
            return self._write(conn, rollout, state_detail=detail.to_dict())

    def record_verdict(self, rollout: RolloutRecord, verdict: dict[str, JSON]) -> None:
        """Keep the latest verdict of the current step (for `rollout status`)."""
        with self.db.write() as conn:
            self._write(conn, rollout, state_detail=_with_verdict(rollout, verdict))

    def wait_for_approval(self, rollout: RolloutRecord) -> None:
        with self.db.write() as conn:
            rs.add_event(conn, rollout, kind="waiting", detail={"for": "approval"})
            self._write(conn, rollout, state=RolloutState.WAITING_APPROVAL)

    def advance(self, rollout: RolloutRecord, step: str, verdict: dict[str, JSON]) -> None:
        """The current step passed with `verdict`: on to `step`."""
        with self.db.write() as conn:
            rs.add_event(conn, rollout, kind="passed", detail=verdict)
            self._write(conn, rollout, step=step, state_detail=_with_verdict(rollout, verdict))

    def promoted(self, rollout: RolloutRecord, detail: RolloutDetail) -> None:
        """The version is champion: on to the bake, remembering how it got there."""
        with self.db.write() as conn:
            rs.add_event(conn, rollout, kind="promoted", detail={"version": rollout.version})
            self._write(conn, rollout, step="bake", state_detail=detail.to_dict())

    def finish(
        self,
        rollout: RolloutRecord,
        state: RolloutState,
        verdict: dict[str, JSON],
        *,
        actor: str,
    ) -> None:
        """End the rollout in `state` because of `verdict`, and audit it."""
        reason = str(verdict.get("reason") or "")
        with self.db.write() as conn:
            rs.add_event(conn, rollout, kind=state.value, detail=verdict)
            self._write(conn, rollout, state=state, reason=reason,
                        state_detail=_with_verdict(rollout, verdict))  # fmt: skip
            md.audit(conn, actor=actor, action=f"rollout.{state.value}",
                     target=rollout.deployment,
                     detail={"rollout": rollout.id, "version": rollout.version,
                             "reason": reason})  # fmt: skip

    @staticmethod
    def _write(
        conn: Connection,
        rollout: RolloutRecord,
        *,
        state: RolloutState | None = None,
        **values: Any,
    ) -> RolloutRecord:
        """The one write of a rollout's row: a state move is checked against the transition
        table; the store applies it only if the rollout is still as read."""
        if state is not None:
            values["state"] = check_rollout_move(rollout.id, rollout.state, state)
        return rs.update_rollout(conn, rollout, **values)

    def restore(self, rollout: RolloutRecord, *, actor: str) -> None:
        """Routing without this rollout's version: before promotion, drop it as shadow or
        challenger; after, roll back to the revision before the promotion."""
        promotion = RolloutDetail.from_dict(rollout.state_detail).promotion
        config = self.routing.current(rollout.deployment)
        if promotion is not None and config.champion == rollout.version:
            self.routing.rollback(
                rollout.deployment, to_revision=promotion.from_revision, actor=actor
            )
            return
        if rollout.version in config.challengers or rollout.version in config.shadows:
            self.routing.route(RouteChange(deployment=rollout.deployment, clear=True, actor=actor))


def _with_verdict(rollout: RolloutRecord, verdict: dict[str, JSON]) -> dict[str, JSON]:
    detail = RolloutDetail.from_dict(rollout.state_detail)
    return detail.with_verdict(rollout.step, verdict).to_dict()
