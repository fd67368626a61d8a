"""The controller: a reconciliation loop that moves running rollouts forward.

Each look, for every running rollout: make live routing match the rollout's step (shadow
for warm-up, a share of traffic for a challenge step, the promotion), read the evidence
gathered since the step began, ask the step's gate, and record the verdict; a pass moves to
the next step, a fail puts routing back and ends the rollout.

Safe to stop and restart at any point: all state is in the metadata DB; routing is made to
match the recorded step (doing nothing when it already does), and a step moves only if it
is still the one that was read, so no move is ever applied twice. Only the holder of the
`controller` lease acts, so with several processes or machines one leads at a time.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from dataclasses import replace

from turnout.errors import Conflict, TurnoutError
from turnout.lifecycle import gates
from turnout.lifecycle.detail import Promotion, RolloutDetail
from turnout.lifecycle.gates import MIRROR_MIN_REQUESTS
from turnout.lifecycle.notify import Notifier, event_body
from turnout.lifecycle.plans import Plan
from turnout.lifecycle.retrain.service import Retraining
from turnout.lifecycle.rollouts import Rollouts
from turnout.lifecycle.routing import RouteChange, Routing
from turnout.lifecycle.sources import DataAccess
from turnout.lifecycle.validation import Predict, validate
from turnout.monitoring.groups import GroupStats, find_group
from turnout.monitoring.service import Monitor
from turnout.registry.signature import Signature
from turnout.store import leases
from turnout.store import metadata as md
from turnout.store import rollouts as rs
from turnout.store.db import Database
from turnout.store.records import RolloutRecord, RolloutState
from turnout.types import JSON

log = logging.getLogger("turnout.controller")

LEASE = "controller"
VALIDATE_TIMEOUT_S = 3600.0
"""How long the validate step waits for enough labelled rows before it fails."""
ACTOR = "controller"


class Controller:
    def __init__(
        self,
        db: Database,
        rollouts: Rollouts,
        routing: Routing,
        monitor: Monitor,
        *,
        interval_s: float = 5.0,
        notifier: Notifier | None = None,
        predict: Predict | None = None,
        retraining: Retraining | None = None,
        access: DataAccess | None = None,
    ) -> None:
        """`notifier` POSTs every step, verdict, promotion and rollback to a webhook;
        `retraining` has its triggers checked and its jobs supervised on every look;
        `access` says where holdout files may be read from (None: anywhere)."""
        self.db = db
        self.rollouts = rollouts
        self.routing = routing
        self.monitor = monitor
        self.interval_s = interval_s
        self.notifier = notifier or Notifier(None)
        self.predict = predict
        """Scores a version on labelled rows for the validate step (None: it is skipped)."""
        self.retraining = retraining
        self.access = access
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the loop ---------------------------------------------------------------------------

    def start(self) -> None:
        self.notifier.start()
        self._thread = threading.Thread(target=self._run, name="turnout-controller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.notifier.close(timeout_s=10.0)
        try:
            with self.db.write() as conn:
                leases.release_lease(conn, LEASE, self.holder)
        except Exception:  # the DB may be gone at shutdown; the lease expires by itself
            log.debug("lease release failed", exc_info=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.tick()
            except Exception:  # the loop must outlive any failure; the next look retries
                log.warning("controller look failed", exc_info=True)

    def lead(self) -> bool:
        """Take or renew the lease; True when this process leads."""
        with self.db.write() as conn:
            return leases.acquire_lease(conn, LEASE, self.holder, ttl_s=3 * self.interval_s)

    def tick(self) -> int:
        """One look at every running rollout; returns how many moved to another step."""
        if not self.lead():
            return 0
        with self.db.read() as conn:
            running = [r for r in rs.active_rollouts(conn) if r.state == RolloutState.RUNNING]
        moved = 0
        for rollout in running:
            try:
                moved += self.look(rollout)
            except Conflict:  # changed meanwhile (approved, aborted, superseded): next look
                continue
            except TurnoutError as exc:
                log.warning("rollout %s of %s: %s", rollout.id, rollout.deployment, exc.message)
                self.rollouts.record_verdict(rollout, {"outcome": "error", "reason": exc.message})
        if self.retraining is not None:
            try:
                self.retraining.tick()
            except Exception:  # retraining trouble must never stop rollouts moving
                log.warning("retraining look failed", exc_info=True)
        return moved

    # -- one rollout ------------------------------------------------------------------------

    def look(self, rollout: RolloutRecord) -> int:
        plan = Plan.model_validate(rollout.plan)
        step = rollout.step
        elapsed_s = (md.now() - rollout.step_started_at).total_seconds()
        if step == "validate":
            verdict = self._validate(rollout, plan, elapsed_s)
        elif step == "warmup":
            assert plan.warmup is not None
            self._route(rollout, shadows={rollout.version: float(plan.warmup.share)})
            shadow, champion = self._evidence(rollout, "shadow")
            timeout_ms = self.routing.current(rollout.deployment).timeout_ms
            verdict = gates.warmup_gate(
                plan.warmup, shadow, champion, timeout_ms=timeout_ms, elapsed_s=elapsed_s
            )
        elif step.startswith("challenge:"):
            assert plan.challenge is not None
            share = float(step.partition(":")[2])
            self._route(rollout, challengers={rollout.version: share})
            challenger, champion = self._evidence(rollout, "challenger")
            state = RolloutDetail.from_dict(rollout.state_detail).tests.get(step)
            verdict, state = gates.challenge_gate(
                plan.challenge, challenger, champion, elapsed_s=elapsed_s, test_state=state
            )
            rollout = self.rollouts.keep_test(rollout, step, state)
        elif step == "approve":
            self.rollouts.wait_for_approval(rollout)
            self._notify(rollout, "waiting", {"for": "approval"})
            return 0
        elif step == "promote":
            return self._promote(rollout)
        elif step == "bake":
            return self._bake(rollout, plan, elapsed_s)
        else:
            raise Conflict(f"unknown step {step!r}")
        return self._conclude(rollout, plan, verdict)

    def _validate(self, rollout: RolloutRecord, plan: Plan, elapsed_s: float) -> gates.Verdict:
        assert plan.validation is not None
        if self.predict is None:
            return gates.Verdict("pass", "no scorer in this process: validation skipped", {})
        config = self.routing.current(rollout.deployment)
        model = self.rollouts.registry.get_version
        with self.db.read() as conn:
            name = md.get_deployment(conn, rollout.deployment).model
        verdict = validate(
            plan.validation,
            reader=self.monitor.reader,
            deployment=rollout.deployment,
            model=name,
            champion=config.champion,
            candidate=rollout.version,
            champion_signature=Signature.from_dict(model(name, config.champion).signature),
            candidate_signature=Signature.from_dict(model(name, rollout.version).signature),
            predict=self.predict,
            access=self.access,
        )
        if verdict.outcome == "inconclusive" and elapsed_s > VALIDATE_TIMEOUT_S:
            reason = f"{verdict.reason} Still undecided after {VALIDATE_TIMEOUT_S:.0f} s."
            return gates.Verdict("fail", reason, verdict.evidence)
        return verdict

    def _evidence(
        self, rollout: RolloutRecord, role: str
    ) -> tuple[GroupStats | None, GroupStats | None]:
        """The candidate's group in `role`, and the champion's, since the step began."""
        champion = self.routing.current(rollout.deployment).champion
        groups = self.monitor.groups(rollout.deployment, since=rollout.step_started_at)
        mine = find_group(groups, rollout.version, role)
        theirs = find_group(groups, champion, "champion")
        return mine, theirs

    def _route(
        self,
        rollout: RolloutRecord,
        *,
        shadows: dict[int, float] | None = None,
        challengers: dict[int, float] | None = None,
    ) -> None:
        """Make routing match the step (nothing happens when it already does).

        Applied only on the revision read here and only if the rollout is still at this
        step after that read: an abort in between (which marks the rollout, then restores
        routing) makes this a no-op instead of undoing the abort."""
        revision = self.routing.active(rollout.deployment)
        config = revision.config
        wanted_shadows, wanted_challengers = shadows or {}, challengers or {}
        if config.shadows == wanted_shadows and config.challengers == wanted_challengers:
            return
        with self.db.read() as conn:
            now = rs.get_rollout(conn, rollout.id)
        if (now.state, now.step) != (rollout.state, rollout.step):
            raise Conflict(f"rollout {rollout.id} moved on meanwhile")
        self.routing.route(
            RouteChange(
                deployment=rollout.deployment,
                shadows=wanted_shadows,
                challengers=wanted_challengers,
                clear=True,
                base_revision=revision.revision,
                actor=ACTOR,
            )
        )

    def _promote(self, rollout: RolloutRecord) -> int:
        config = self.routing.current(rollout.deployment)
        detail = RolloutDetail.from_dict(rollout.state_detail)
        if config.champion != rollout.version:
            before = _champion_before(self.monitor, rollout, config.champion)
            revision = self._revision(rollout.deployment)
            if config.challengers or config.shadows:
                self._route(rollout)  # the promoted version answers alone
                revision = self._revision(rollout.deployment)
            applied = self.routing.promote(rollout.deployment, rollout.version, actor=ACTOR)
            promotion = Promotion(
                from_revision=revision,
                revision=applied.revision.revision,
                previous_champion=config.champion,
                champion_before=before,
            )
            detail = replace(detail, promotion=promotion)
        self.rollouts.promoted(rollout, detail)
        self._notify(rollout, "promoted", {"version": rollout.version})
        return 1

    def _bake(self, rollout: RolloutRecord, plan: Plan, elapsed_s: float) -> int:
        promotion = RolloutDetail.from_dict(rollout.state_detail).promotion
        old = promotion.previous_champion if promotion is not None else None
        mirror = plan.bake.mirror_previous if old is not None else 0.0
        if old is not None and mirror > 0:  # it answers a share of the same traffic, unseen
            self._route(rollout, shadows={old: mirror})
        groups = self.monitor.groups(rollout.deployment, since=rollout.step_started_at)
        champion = find_group(groups, rollout.version, "champion")
        # a limit the old champion breaches as well points at something both share (a
        # dependency, the traffic), not the new version: judged on its mirrored answers
        # when it has enough of them, else on its record before the promotion
        mirrored = find_group(groups, old, "shadow") if old is not None and mirror > 0 else None
        live = mirrored is not None and mirrored.requests >= MIRROR_MIN_REQUESTS
        before = promotion.champion_before if promotion is not None else None
        verdict = gates.bake_gate(
            plan.bake,
            champion,
            previous=mirrored if live else before,
            baseline_accuracy=promotion.champion_accuracy if promotion is not None else None,
            elapsed_s=elapsed_s,
            mirrored=live,
        )
        if verdict.outcome == "inconclusive":
            self.rollouts.record_verdict(rollout, verdict.to_dict())
            return 0
        if verdict.outcome == "pass":
            if mirror > 0:
                self._route(rollout)  # the mirror ends with the bake
            return self._finish(rollout, RolloutState.SUCCEEDED, verdict)
        both_bad = bool(verdict.evidence.get("both_bad"))
        self.rollouts.restore(rollout, actor=ACTOR)
        ending = RolloutState.ABORTED if both_bad else RolloutState.ROLLED_BACK
        return self._finish(rollout, ending, verdict)

    def _conclude(self, rollout: RolloutRecord, plan: Plan, verdict: gates.Verdict) -> int:
        if verdict.outcome == "inconclusive":
            self.rollouts.record_verdict(rollout, verdict.to_dict())
            return 0
        if verdict.outcome == "fail":
            self.rollouts.restore(rollout, actor=ACTOR)
            return self._finish(rollout, RolloutState.FAILED, verdict)
        steps = plan.steps()
        following = steps[steps.index(rollout.step) + 1]
        self.rollouts.advance(rollout, following, verdict.to_dict())
        self._notify(rollout, "passed", verdict.to_dict())
        return 1

    def _finish(self, rollout: RolloutRecord, state: RolloutState, verdict: gates.Verdict) -> int:
        self.rollouts.finish(rollout, state, verdict.to_dict(), actor=ACTOR)
        self._notify(rollout, state.value, verdict.to_dict())
        return 1

    def _notify(self, rollout: RolloutRecord, kind: str, detail: dict[str, JSON]) -> None:
        """After the transaction: a receiver never hears of a move that was not made."""
        self.notifier.send(event_body(rollout, kind, detail))

    def _revision(self, deployment: str) -> int:
        with self.db.read() as conn:
            return md.get_deployment(conn, deployment).active_revision


def _champion_before(monitor: Monitor, rollout: RolloutRecord, champion: int) -> GroupStats | None:
    """The champion's record over the rollout so far: the bar the new champion must hold
    while baking (accuracy), and what tells a shared problem from the new version's own."""
    groups = monitor.groups(rollout.deployment, since=rollout.created_at)
    return find_group(groups, champion, "champion")
