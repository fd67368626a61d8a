"""Retraining as a service: policies per deployment, manual and automatic triggers, jobs run
out of the serving processes, and the hand-off of a finished job to a rollout.

`tick()` is called by the controller (the lease holder) on every look: it evaluates the
triggers of each policy that is due, supervises jobs (start, time out, cancel, detect a dead
process), and hands every succeeded job's new version to a rollout (or only registers it,
per policy). Everything it needs between looks is in the metadata DB, so a restarted
controller carries on: a job is handed off exactly once (compare-and-set on its result).
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from turnout import redact
from turnout.errors import BadRequest, Conflict, NotFound, TurnoutError
from turnout.lifecycle import batch
from turnout.lifecycle.retrain import ledger, triggers
from turnout.lifecycle.retrain.data import check_source
from turnout.lifecycle.retrain.executor import Executor, supervise
from turnout.lifecycle.retrain.policy import DataSource, RetrainPolicy, redacted
from turnout.lifecycle.retrain.spec import JobSpec
from turnout.lifecycle.rollouts import Rollouts
from turnout.lifecycle.sources import DataAccess
from turnout.monitoring.service import Monitor
from turnout.registry.service import Registry
from turnout.registry.signature import Signature
from turnout.store import jobs as js
from turnout.store import metadata as md
from turnout.store import rollouts as rs
from turnout.store.db import Database
from turnout.store.records import JobRecord, JobState, VersionRecord
from turnout.types import JSON

log = logging.getLogger("turnout.retrain")

RETRAINABLE_FLAVORS = ("sklearn", "xgboost", "lightgbm")
CHECK_BUDGET_S = 2.0
"""Time one controller look may spend on trigger checks (a check of a deployment with a
million logged predictions a day takes about a second)."""
LOG_TAIL_BYTES = 64 * 1024


class Retraining:
    def __init__(
        self,
        db: Database,
        registry: Registry,
        monitor: Monitor,
        rollouts: Rollouts,
        executor: Executor,
        *,
        notify: Callable[[dict[str, JSON]], None] | None = None,
        access: DataAccess | None = None,
    ) -> None:
        self.db = db
        self.access = access
        """Where policies may point for training data (None: anywhere, for trusted use);
        the job checks again before it reads."""
        self.registry = registry
        self.monitor = monitor
        self.rollouts = rollouts
        self.executor = executor
        self.notify = notify or (lambda body: None)
        self._watching: set[int] = set()
        """Jobs seen running: `supervise` reports each once it has finished."""

    # -- policies ---------------------------------------------------------------------------

    def set_policy(self, deployment: str, policy: object, *, actor: str) -> dict[str, JSON]:
        """Validate and store the deployment's policy (YAML text or a mapping); the current
        champion must be retrainable (registered with a pipeline, in a retrainable flavor)."""
        parsed = RetrainPolicy.parse(policy)
        if self.access is not None:
            check_source(parsed.data, self.access)
        champion = self._champion(deployment)
        self._check_retrainable(champion)
        self._target(parsed, champion)
        stored = parsed.to_dict()
        with self.db.write() as conn:
            md.set_retrain_policy(conn, deployment, stored)
            md.audit(conn, actor=actor, action="retrain.policy", target=deployment,
                     detail={"policy": redacted(stored)})  # fmt: skip
        return self.policy(deployment)

    def clear_policy(self, deployment: str, *, actor: str) -> None:
        with self.db.write() as conn:
            md.set_retrain_policy(conn, deployment, None)
            md.audit(conn, actor=actor, action="retrain.policy.clear", target=deployment,
                     detail={})  # fmt: skip

    def policy(self, deployment: str) -> dict[str, JSON]:
        """The stored policy (None when there is none) and what the last check saw."""
        with self.db.read() as conn:
            policy = md.get_retrain_policy(conn, deployment)
            state = dict(md.get_deployment_retrain_state(conn, deployment) or {})
            running = js.active_job(conn, deployment)
        shown: dict[str, JSON] = redacted({
            "deployment": deployment,
            "policy": policy,
            "state": state,  # a failed check's message may quote the source's URL
            "running_job": running.id if running is not None else None,
        })  # fmt: skip
        return shown

    # -- jobs -------------------------------------------------------------------------------

    def retrain(
        self,
        deployment: str,
        *,
        actor: str,
        trigger: str = "manual",
        detail: dict[str, JSON] | None = None,
        data: dict[str, Any] | None = None,
    ) -> JobRecord:
        """Queue a retrain of the deployment's champion; the controller starts it. `data`
        overrides the policy's data source (needed when there is no policy)."""
        if data is not None and self.access is not None:
            check_source(_source(data), self.access)
        with self.db.read() as conn:
            stored = md.get_retrain_policy(conn, deployment)
        if stored is None and data is None:
            raise BadRequest(
                f"deployment {deployment!r} has no retrain policy; set one "
                "(turnout retrain-policy set) or name the data to train on (--data)"
            )
        policy = RetrainPolicy.parse(stored if stored is not None else {"data": data})
        if data is not None:
            policy = policy.model_copy(update={"data": _source(data)})
        elif self.access is not None:  # stored before the roots changed, perhaps
            check_source(policy.data, self.access)
        champion = self._champion(deployment)
        self._check_retrainable(champion)
        assert champion.pipeline is not None
        spec = JobSpec(
            deployment=deployment,
            model=champion.model,
            parent_version=champion.version,
            flavor=champion.flavor,
            pipeline=champion.pipeline,
            params=dict(champion.params),
            data=policy.data.model_dump(mode="json", exclude_none=True),
            target=self._target(policy, champion),
            columns=list(Signature.from_dict(champion.signature).names),
            holdout_fraction=policy.holdout_fraction,
            min_rows=policy.min_rows,
            timeout_s=policy.timeout,
            on_success=policy.on_success,
            tags=dict(champion.tags),
            cpus=policy.resources.cpus,
            memory_mb=policy.resources.memory_mb,
        )
        with self.db.write() as conn:
            job = ledger.create(
                conn,
                deployment=deployment,
                model=champion.model,
                parent_version=champion.version,
                trigger=trigger,
                trigger_detail=detail or {},
                spec=spec.to_dict(),
                actor=actor,
            )
            md.audit(conn, actor=actor, action="retrain.start", target=deployment,
                     detail={"job": job.id, "trigger": trigger,
                             "version": champion.version})  # fmt: skip
        self._notify(job, "queued")
        return job

    def jobs(
        self, *, deployment: str | None = None, state: str | None = None, limit: int = 100
    ) -> list[JobRecord]:
        with self.db.read() as conn:
            if deployment is not None:
                md.get_deployment(conn, deployment)
            return js.list_jobs(
                conn, deployment=deployment, states=(state,) if state else None, limit=limit
            )

    def job(self, job_id: int) -> JobRecord:
        with self.db.read() as conn:
            return js.get_job(conn, job_id)

    def logs(self, job_id: int, *, tail_bytes: int = LOG_TAIL_BYTES) -> str:
        """The end of the job's log (what its process printed)."""
        job = self.job(job_id)
        path = self.executor.log_path(job_id)
        if not path.is_file():
            if job.host is not None and job.host != socket.gethostname():
                raise NotFound(
                    f"job {job_id} ran on {job.host}: its log is kept there; ask the turnout "
                    "server on that machine"
                )
            return ""
        with path.open("rb") as fh:
            size = fh.seek(0, 2)
            fh.seek(max(0, size - tail_bytes))
            return redact.text(fh.read().decode("utf-8", errors="replace"))

    def cancel(self, job_id: int, *, actor: str) -> JobRecord:
        with self.db.write() as conn:
            job = ledger.request_cancel(conn, job_id)
            md.audit(conn, actor=actor, action="retrain.cancel", target=job.deployment,
                     detail={"job": job_id})  # fmt: skip
        return job

    # -- batch scoring ----------------------------------------------------------------------

    def batch(
        self,
        deployment: str,
        *,
        actor: str,
        input: str | None,
        version: int | None = None,
        chunk_rows: int | None = None,
        resume: int | None = None,
    ) -> JobRecord:
        """Queue a batch scoring job of `input` (a server path) with the champion, or
        `version`; with `resume`, continue that earlier batch job where it stopped."""
        with self.db.read() as conn:
            record = md.get_deployment(conn, deployment)
            revision = md.get_revision(conn, record, record.active_revision)
            earlier = js.get_job(conn, resume) if resume is not None else None
        if earlier is not None:
            asked = {"input": input, "version": version, "chunk_rows": chunk_rows}
            spec = batch.resumed_spec(earlier, deployment, asked)
        else:
            if not input:
                raise BadRequest("name the input to score (a CSV/Parquet file, folder or glob)")
            chosen = self.registry.get_version(
                record.model, version if version is not None else revision.config.champion
            )
            spec = batch.BatchSpec(
                deployment=deployment,
                model=chosen.model,
                version=chosen.version,
                revision=revision.revision,
                input=input,
                chunk_rows=batch.check_chunk_rows(chunk_rows or batch.CHUNK_ROWS),
                log_payloads=revision.config.log_payloads,
            )
        signature = Signature.from_dict(
            self.registry.get_version(spec.model, spec.version).signature
        )
        batch.check_input(spec.input, signature, self.access)
        with self.db.write() as conn:
            job = ledger.create(
                conn,
                kind=batch.BATCH_KIND,
                deployment=deployment,
                model=spec.model,
                parent_version=spec.version,
                trigger="manual" if resume is None else "resume",
                trigger_detail={} if resume is None else {"resumes": resume},
                spec=spec.to_dict(),
                actor=actor,
            )
            md.audit(conn, actor=actor, action="batch.start", target=deployment,
                     detail={"job": job.id, "version": spec.version,
                             "resumes": resume})  # fmt: skip
        self._notify(job, "queued")
        return job

    def batch_output(self, job_id: int) -> list[Path]:
        """The part files of a batch job's output, in row order."""
        job = self.job(job_id)
        if job.kind != batch.BATCH_KIND:
            raise BadRequest(f"job {job_id} is a {job.kind} job; only batch jobs have output")
        if "output" not in job.result:
            raise Conflict(
                f"batch job {job_id} is {job.state}; its output is ready once it succeeded"
            )
        return batch.output_parts(str(job.result["output"]), self.access)

    # -- the controller's look --------------------------------------------------------------

    def tick(self, now: datetime | None = None) -> None:
        now = now or datetime.now(UTC)
        self._check_triggers(now)
        for job in supervise(self.db, self.executor, now=now, watching=self._watching):
            self._notify(job, job.state.value)
        self._hand_off()

    def _check_triggers(self, now: datetime) -> None:
        """Check the policies that are due, longest-waiting first, for at most
        CHECK_BUDGET_S per look: the rest wait for the next look, so checks on a large log
        never hold up the rollouts the same loop moves."""
        with self.db.read() as conn:
            policies = md.retrain_policies(conn)
        policies.sort(key=lambda entry: str(entry[2].get("checked_at") or ""))
        started = time.monotonic()
        for deployment, stored, state in policies:
            if time.monotonic() - started > CHECK_BUDGET_S:
                break
            try:
                policy = RetrainPolicy.model_validate(stored)
                checked = state.get("checked_at")
                if checked and now < _parse(str(checked)) + timedelta(seconds=policy.check_every):
                    continue
                facts = triggers.gather(
                    self.monitor, self.registry, self.db, deployment, policy, state, now
                )
                decision = self._labelled_enough(
                    deployment, policy, triggers.decide(policy, facts), now
                )
                fired = None
                if decision.fire:
                    assert decision.trigger is not None
                    detail = {"reason": decision.reason, **decision.detail}
                    job = self.retrain(
                        deployment, actor="controller", trigger=decision.trigger, detail=detail
                    )
                    fired = job.id
                with self.db.write() as conn:
                    md.set_retrain_state(conn, deployment, {
                        **state, "checked_at": now.isoformat(), "fire": decision.fire,
                        "trigger": decision.trigger, "reason": decision.reason,
                        "detail": decision.detail, "job": fired if fired else state.get("job"),
                    })  # fmt: skip
            except Exception as exc:  # one policy's trouble must not stop the others
                message = exc.message if isinstance(exc, TurnoutError) else repr(exc)
                log.warning("retrain check of %s failed: %s", deployment, message,
                            exc_info=not isinstance(exc, TurnoutError))  # fmt: skip
                # recorded as checked: it goes to the back of the queue, and is shown
                with self.db.write() as conn:
                    md.set_retrain_state(conn, deployment, {
                        **state, "checked_at": now.isoformat(), "fire": False,
                        "reason": f"check failed: {message}",
                    })  # fmt: skip

    def _start_rollout(self, job: JobRecord) -> dict[str, JSON]:
        version = int(str(job.result["version"]))
        if JobSpec.from_dict(job.spec).on_success != "rollout":
            return {"action": "registered"}
        actor = f"job:{job.id}"
        with self.db.read() as conn:
            latest = rs.latest_rollout(conn, job.deployment)
        if latest is not None and latest.created_by == actor:
            return {"action": "rollout", "rollout": latest.id}
        try:
            view = self.rollouts.start(job.deployment, version, None, actor=actor)
        except TurnoutError as exc:  # e.g. the version is the champion already
            return {"action": "none", "error": exc.message}
        return {"action": "rollout", "rollout": view.rollout.id}

    def _labelled_enough(
        self,
        deployment: str,
        policy: RetrainPolicy,
        decision: triggers.Decision,
        now: datetime,
    ) -> triggers.Decision:
        """A retrain on the deployment's own traffic needs its actuals: a trigger that
        fires before `min_rows` of them are in the data window (drift shows at once, the
        truth comes later) is held until they are, rather than starting a job bound to fail
        and the cooldown with it."""
        if not decision.fire or policy.data.log is None:
            return decision
        since = now - timedelta(seconds=policy.data.log)
        labelled = triggers.count_actuals(self.monitor.root, deployment, since=since, until=now)
        if labelled >= policy.min_rows:
            return decision
        reason = (
            f"{decision.reason.rstrip('.')}; held: only {labelled} predictions with actuals "
            f"in the data window to train on, {policy.min_rows} needed (min_rows)"
        )
        held = f"waiting for actuals: {labelled} of {policy.min_rows} in the data window"
        detail = {**decision.detail, "labelled_rows": labelled, "held": held,
                  "would_fire": decision.trigger}  # fmt: skip
        return replace(decision, fire=False, reason=reason, detail=detail)

    def _hand_off(self) -> None:
        """Give each succeeded job's version to a rollout, once: a rollout this job already
        started (a look that stopped before recording it) is recorded, not started again."""
        with self.db.read() as conn:
            done = js.list_jobs(conn, states=(JobState.SUCCEEDED,), limit=50)
        for job in done:
            if (
                job.kind != "retrain"
                or "handoff" in job.result
                or job.result.get("version") is None
            ):
                continue
            try:
                handoff = self._start_rollout(job)
                with self.db.write() as conn:
                    ledger.note_result(conn, job, {**job.result, "handoff": handoff})
            except Conflict:
                continue
            except Exception:  # e.g. the DB for a moment: this job is retried next look
                log.warning("hand-off of job %s failed", job.id, exc_info=True)
                continue
            self._notify(job, "handed_off", handoff)

    # -- helpers ----------------------------------------------------------------------------

    def _champion(self, deployment: str) -> VersionRecord:
        with self.db.read() as conn:
            record = md.get_deployment(conn, deployment)
            revision = md.get_revision(conn, record, record.active_revision)
        return self.registry.get_version(record.model, revision.config.champion)

    def _check_retrainable(self, version: VersionRecord) -> None:
        if version.pipeline is None:
            raise BadRequest(
                f"{version.ref} was registered without a training pipeline, so it cannot be "
                "retrained; register a version with --pipeline (pkg.module:fit or train.py)"
            )
        if version.flavor not in RETRAINABLE_FLAVORS:
            raise BadRequest(
                f"{version.ref} is a {version.flavor} model; retraining supports "
                + ", ".join(RETRAINABLE_FLAVORS)
            )

    def _target(self, policy: RetrainPolicy, version: VersionRecord) -> str:
        if policy.target:
            return policy.target
        training = version.training or {}
        if isinstance(training.get("target"), str):
            return str(training["target"])
        if policy.data.log is not None:
            return "actual"
        raise BadRequest(
            f"the retrain policy names no target column and {version.ref} was registered "
            "without one (--target); set `target:` in the policy"
        )

    def _notify(self, job: JobRecord, kind: str, detail: dict[str, JSON] | None = None) -> None:
        self.notify(redacted({
            "deployment": job.deployment, "job": job.id, "kind": f"{job.kind}.{kind}",
            "trigger": job.trigger, "parent_version": job.parent_version,
            "detail": detail if detail is not None else {"message": job.message,
                                                         "result": job.result},
            "at": datetime.now(UTC).isoformat(),
        }))  # fmt: skip


def _source(data: dict[str, Any]) -> DataSource:
    try:
        return RetrainPolicy.parse({"data": data}).data
    except BadRequest as exc:
        raise BadRequest(exc.message.replace("policy.data", "data")) from None


def _parse(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
