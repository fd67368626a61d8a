"""The retraining service against a real metadata DB, registry and prediction log:
policies, manual retrains, triggers checked by the controller's look, and the hand-off of a
finished job to a rollout. Job processes themselves are covered in `test_jobs.py`; here a
finished job is recorded in the DB as its process would record it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pytest

from tests.fixtures.models import breast_cancer, save_joblib, sklearn_pipeline
from tests.fixtures.registry import open_registry
from tests.lifecycle.retrain.pipelines import REFERENCE, write
from turnout.api.retrain import job_json
from turnout.errors import BadRequest, Conflict, NotFound
from turnout.lifecycle.apply import Applier
from turnout.lifecycle.deployments import Deployments, NewDeployment
from turnout.lifecycle.retrain.executor import LocalExecutor, child_env
from turnout.lifecycle.retrain.service import Retraining
from turnout.lifecycle.rollouts import Rollouts
from turnout.lifecycle.routing import Routing
from turnout.monitoring.layout import ACTUAL_SCHEMA, new_prediction_id
from turnout.monitoring.segments import write_segment
from turnout.monitoring.service import Monitor
from turnout.registry.pipelines import parse_pipeline
from turnout.registry.service import NewVersion, Registry
from turnout.settings import Settings
from turnout.store import jobs as js
from turnout.store import metadata as md


class Stack:
    """`bc:1` (with its pipeline) and `bc:2` (without) registered; `bc-prod` serves 1."""

    def __init__(self, root: Path, registry: Registry) -> None:
        self.root = root
        self.registry = registry
        self.db = registry.db
        features, target = breast_cancer()
        self.data = root / "train.csv"
        features.assign(target=target).to_csv(self.data, index=False)
        pipeline = parse_pipeline(str(write(root / "code", REFERENCE)))
        for version, code in ((1, pipeline), (2, None)):
            folder = root / f"v{version}"
            folder.mkdir()
            registry.register(NewVersion(
                model="bc", source=save_joblib(sklearn_pipeline(0.5), folder), flavor="sklearn",
                params={"C": "0.5", "max_iter": "1000"}, training_data=self.data,
                target="target", pipeline=code,
            ))  # fmt: skip
        self.routing = Routing(self.db, registry, ack_timeout_s=1)
        self.rollouts = Rollouts(self.db, registry, self.routing)
        self.deployments = Deployments(self.db, registry)
        self.deployments.create(NewDeployment(name="bc-prod", model="bc", version=1))
        self.monitor = Monitor(self.db, registry, root / "log", writer="test")
        env = {**child_env(Settings(home=root)), "TURNOUT_DATA_ROOTS": str(root)}
        executor = LocalExecutor(root / "jobs", env)
        self.events: list[dict[str, Any]] = []
        self.retraining = Retraining(
            self.db, registry, self.monitor, self.rollouts, executor, notify=self.events.append
        )

    def finish(self, job_id: int, version: int) -> None:
        """Record a job as succeeded with `version`, as its process does at its end."""
        with self.db.write() as conn:
            job = js.get_job(conn, job_id)
            running = js.update_job(conn, job, state="running")
            js.update_job(conn, running, state="succeeded", progress=1.0,
                          result={"version": version})  # fmt: skip

    def actuals(self, n: int, at: datetime) -> None:
        table = pa.Table.from_pylist(_actual_rows(n, at), schema=ACTUAL_SCHEMA)
        write_segment(self.root / "log", "actuals", "test", table)


def _actual_rows(n: int, at: datetime) -> list[dict[str, Any]]:
    return [
        {"prediction_id": new_prediction_id(), "deployment": "bc-prod",
         "actual": orjson.dumps(1).decode(), "received_at": at, "revision": 1,
         "model": "bc", "version": 1, "role": "champion", "predicted_at": at,
         "outcome": "ok", "output": "1", "probabilities": None}
        for _ in range(n)
    ]  # fmt: skip


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with open_registry(tmp_path) as registry:
        yield Stack(tmp_path, registry)


def test_a_policy_is_stored_validated_and_shown_without_a_password(stack: Stack) -> None:
    policy = {"data": {"sql": "select * from t", "url": "postgresql://u:hunter2@db/x"},
              "triggers": {"drift_psi": 0.3}}  # fmt: skip
    shown = stack.retraining.set_policy("bc-prod", policy, actor="alice")
    assert shown["policy"]["triggers"]["drift_psi"] == 0.3
    assert "hunter2" not in orjson.dumps(shown).decode()
    with stack.db.read() as conn:
        stored = md.get_retrain_policy(conn, "bc-prod")
        audit = orjson.dumps(md.list_audit(conn)).decode()
    assert stored is not None
    assert "hunter2" in str(stored["data"])  # the job needs it to connect
    assert "hunter2" not in audit
    with pytest.raises(BadRequest, match=r"policy\.triggers\.schedule"):
        stack.retraining.set_policy(
            "bc-prod", {"data": {"log": "30d"}, "triggers": {"schedule": "every day"}},
            actor="alice",
        )  # fmt: skip


QUERY_SECRET_URL = "postgresql+psycopg://u@db/x?sslmode=require&password=hunter2&sslpassword=pw2"


def test_query_string_passwords_are_hidden_wherever_a_source_is_shown(stack: Stack) -> None:
    """Policy, audit log, jobs, job logs and webhooks never show `?password=` values."""
    policy = {"data": {"sql": "select * from t", "url": QUERY_SECRET_URL}}
    shown = orjson.dumps(stack.retraining.set_policy("bc-prod", policy, actor="alice")).decode()
    assert "sslmode=require" in shown  # the rest of the URL is still there to read
    job = stack.retraining.retrain("bc-prod", actor="alice")
    failed = f"the training query against {QUERY_SECRET_URL} failed: timeout"
    with stack.db.write() as conn:
        running = js.update_job(conn, job, state="running")
        js.update_job(conn, running, state="failed", message=failed,
                      result={"sources": [{"kind": "sql", "url": QUERY_SECRET_URL}]})  # fmt: skip
    log = stack.root / "jobs" / f"{job.id}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(f"reading {QUERY_SECRET_URL}\nconnect: host=db password=hunter2\n")
    stack.retraining._notify(stack.retraining.job(job.id), "failed")
    with stack.db.read() as conn:
        audit = orjson.dumps(md.list_audit(conn)).decode()
    surfaces = {
        "policy": orjson.dumps(stack.retraining.policy("bc-prod")).decode(),
        "set": shown,
        "audit": audit,
        "job": orjson.dumps(job_json(stack.retraining.job(job.id))).decode(),
        "jobs": orjson.dumps([job_json(j) for j in stack.retraining.jobs()]).decode(),
        "logs": stack.retraining.logs(job.id),
        "webhooks": orjson.dumps(stack.events).decode(),
    }
    for surface, text in surfaces.items():
        assert "hunter2" not in text, surface
        assert "pw2" not in text, surface
    assert "password=***" in surfaces["job"]
    assert "password=***" in surfaces["logs"]


def test_a_champion_without_a_pipeline_cannot_get_a_policy(stack: Stack) -> None:
    stack.routing.promote("bc-prod", 2, actor="alice")
    with pytest.raises(BadRequest, match="without a training pipeline"):
        stack.retraining.set_policy("bc-prod", {"data": {"log": "30d"}}, actor="alice")
    with pytest.raises(BadRequest, match="without a training pipeline"):
        stack.retraining.retrain("bc-prod", actor="alice", data={"path": str(stack.data)})


def test_a_manual_retrain_needs_a_policy_or_data_and_copies_the_champion(stack: Stack) -> None:
    with pytest.raises(BadRequest, match="no retrain policy"):
        stack.retraining.retrain("bc-prod", actor="alice")
    job = stack.retraining.retrain("bc-prod", actor="alice", data={"path": str(stack.data)})
    champion = stack.registry.get_version("bc", 1)
    assert job.state == "queued"
    assert job.trigger == "manual"
    assert job.spec["params"] == champion.params
    assert job.spec["pipeline"] == champion.pipeline
    assert job.spec["target"] == "target"
    assert job.spec["data"] == {"path": str(stack.data)}
    with pytest.raises(Conflict, match="one runs at a time"):
        stack.retraining.retrain("bc-prod", actor="bob", data={"path": str(stack.data)})
    assert [e["kind"] for e in stack.events] == ["retrain.queued"]


def test_a_log_kept_on_another_machine_says_where(stack: Stack) -> None:
    job = stack.retraining.retrain("bc-prod", actor="alice", data={"path": str(stack.data)})
    assert stack.retraining.logs(job.id) == ""  # not started yet: nothing printed
    with stack.db.write() as conn:
        js.update_job(conn, job, state="running", host="gpu-node-7", pid=4242)
    with pytest.raises(NotFound, match="ran on gpu-node-7"):
        stack.retraining.logs(job.id)


def test_a_finished_job_is_handed_to_a_rollout_once(stack: Stack) -> None:
    job = stack.retraining.retrain("bc-prod", actor="alice", data={"path": str(stack.data)})
    stack.finish(job.id, 2)
    stack.retraining.tick()
    stack.retraining.tick()  # a second look must not start a second rollout
    handed = stack.retraining.job(job.id)
    assert handed.result["handoff"]["action"] == "rollout"
    status = stack.rollouts.status("bc-prod")
    assert status.rollout.version == 2
    assert status.rollout.created_by == f"job:{job.id}"
    with stack.db.read() as conn:
        started = [e for e in md.list_audit(conn) if e["action"] == "rollout.start"]
    assert len(started) == 1


def test_a_rollout_started_before_a_look_stopped_is_recorded_not_started_again(
    stack: Stack,
) -> None:
    """A look that started the rollout but stopped before recording it (a crash, the DB
    gone for a moment): the next look records that rollout instead of starting another."""
    job = stack.retraining.retrain("bc-prod", actor="alice", data={"path": str(stack.data)})
    stack.finish(job.id, 2)
    started = stack.rollouts.start("bc-prod", 2, None, actor=f"job:{job.id}")
    stack.retraining.tick()
    assert stack.retraining.job(job.id).result["handoff"] == {
        "action": "rollout", "rollout": started.rollout.id
    }  # fmt: skip
    with stack.db.read() as conn:
        starts = [e for e in md.list_audit(conn) if e["action"] == "rollout.start"]
    assert len(starts) == 1


def test_a_register_only_policy_leaves_routing_alone(stack: Stack) -> None:
    stack.retraining.set_policy(
        "bc-prod", {"data": {"path": str(stack.data)}, "on_success": "register"}, actor="alice"
    )
    job = stack.retraining.retrain("bc-prod", actor="alice")
    stack.finish(job.id, 2)
    stack.retraining.tick()
    assert stack.retraining.job(job.id).result["handoff"] == {"action": "registered"}
    with pytest.raises(NotFound, match="has no rollout"):
        stack.rollouts.status("bc-prod")


def test_the_controllers_look_fires_a_trigger_and_respects_check_every(stack: Stack) -> None:
    stack.retraining.set_policy(
        "bc-prod",
        {"data": {"path": str(stack.data)}, "triggers": {"new_actuals": 50},
         "check_every": "1h"},
        actor="alice",
    )  # fmt: skip
    now = datetime.now(UTC) + timedelta(seconds=1)  # after the champion's registration
    stack.actuals(49, now)
    stack.retraining._check_triggers(now + timedelta(seconds=1))
    assert stack.retraining.jobs(deployment="bc-prod") == []
    state = stack.retraining.policy("bc-prod")["state"]
    assert state["fire"] is False
    assert "49" in state["reason"]
    stack.actuals(1, now)
    stack.retraining._check_triggers(now + timedelta(minutes=1))  # not due: checked 1 min ago
    assert stack.retraining.jobs(deployment="bc-prod") == []
    stack.retraining._check_triggers(now + timedelta(hours=2))
    jobs = stack.retraining.jobs(deployment="bc-prod")
    assert [j.trigger for j in jobs] == ["actuals"]
    assert jobs[0].created_by == "controller"
    assert stack.retraining.policy("bc-prod")["state"]["job"] == jobs[0].id


def test_a_retrain_on_logged_traffic_waits_for_enough_actuals(stack: Stack) -> None:
    """The trigger fires at 10 new actuals, but training on the deployment's own traffic
    needs 50 labelled rows: no job (it would fail, and start the cooldown) until they are
    there."""
    stack.retraining.set_policy(
        "bc-prod",
        {"data": {"log": "1h"}, "triggers": {"new_actuals": 10}, "min_rows": 50,
         "check_every": "1s"},
        actor="alice",
    )  # fmt: skip
    now = datetime.now(UTC) + timedelta(seconds=1)
    stack.actuals(20, now)
    stack.retraining._check_triggers(now + timedelta(seconds=1))
    assert stack.retraining.jobs(deployment="bc-prod") == []
    state = stack.retraining.policy("bc-prod")["state"]
    assert state["fire"] is False
    assert "held: only 20 predictions with actuals" in state["reason"]
    assert state["detail"]["would_fire"] == "actuals"
    stack.actuals(40, now)
    stack.retraining._check_triggers(now + timedelta(seconds=5))
    assert [j.trigger for j in stack.retraining.jobs(deployment="bc-prod")] == ["actuals"]


def test_a_check_that_breaks_is_recorded_and_the_other_policies_still_run(
    stack: Stack,
) -> None:
    """A damaged actuals file makes one deployment's check fail; it is recorded as such, and
    the next deployment's policy is checked and fires as usual."""
    stack.deployments.create(NewDeployment(name="bc-other", model="bc", version=1))
    policy = {"data": {"path": str(stack.data)}, "triggers": {"new_actuals": 1},
              "check_every": "1s"}  # fmt: skip
    for name in ("bc-prod", "bc-other"):
        stack.retraining.set_policy(name, policy, actor="alice")
    now = datetime.now(UTC) + timedelta(seconds=1)
    stack.actuals(5, now)
    # a file of the earlier per-deployment layout: only bc-prod's check reads it
    damaged = stack.root / "log" / "actuals" / "bc-prod" / f"{now:%Y-%m-%d}"
    damaged.mkdir(parents=True)
    (damaged / "test-00-1_000001.parquet").write_bytes(b"not parquet at all")
    other = [{**row, "deployment": "bc-other"} for row in _actual_rows(5, now)]
    write_segment(stack.root / "log", "actuals", "test",
                  pa.Table.from_pylist(other, schema=ACTUAL_SCHEMA))  # fmt: skip
    stack.retraining._check_triggers(now + timedelta(seconds=1))
    broken = stack.retraining.policy("bc-prod")["state"]
    assert broken["fire"] is False
    assert broken["reason"].startswith("check failed:")
    assert stack.retraining.jobs(deployment="bc-prod") == []
    assert [j.trigger for j in stack.retraining.jobs(deployment="bc-other")] == ["actuals"]


def test_a_spec_sets_the_policy_and_applying_it_again_changes_nothing(stack: Stack) -> None:
    applier = Applier(stack.deployments, stack.routing, stack.rollouts, stack.db, stack.retraining)
    spec = {"deployment": "bc-prod", "model": "bc", "version": 1,
            "retrain": {"data": {"log": "30d"}, "triggers": {"accuracy_below": 0.9}}}  # fmt: skip
    assert "retrain" in applier.apply(spec, actor="alice")["changed"]
    assert applier.apply(spec, actor="alice")["changed"] == []
    policy = stack.retraining.policy("bc-prod")["policy"]
    assert policy["triggers"]["accuracy_below"] == 0.9
    without = {k: v for k, v in spec.items() if k != "retrain"}
    assert "retrain" in applier.apply(without, actor="alice")["changed"]
    assert stack.retraining.policy("bc-prod")["policy"] is None
    with pytest.raises(BadRequest, match=r"retrain\.triggers\.accuracy_below"):
        applier.apply({**spec, "retrain": {"data": {"log": "30d"},
                                           "triggers": {"accuracy_below": 2}}},
                      actor="alice")  # fmt: skip
