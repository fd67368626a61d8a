"""Rollouts moved by the controller, against a real metadata DB, registry, routing and
prediction log. Evidence is written into the log as the gateways would write it, so each
test decides what the gates see."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pytest

from tests.fixtures.registry import open_registry
from tests.fixtures.routing_models import ROW, constant_model
from tests.fixtures.webhooks import Receiver
from turnout.errors import Conflict, Forbidden
from turnout.lifecycle.controller import Controller
from turnout.lifecycle.deployments import Deployments, NewDeployment
from turnout.lifecycle.notify import Notifier
from turnout.lifecycle.rollouts import Rollouts
from turnout.lifecycle.routing import Routing
from turnout.monitoring.layout import ACTUAL_SCHEMA, PREDICTION_SCHEMA, new_prediction_id
from turnout.monitoring.segments import write_segment
from turnout.monitoring.service import Monitor
from turnout.registry.service import NewVersion, Registry

PLAN: dict[str, Any] = {
    "warmup": {"min_requests": 20, "max_error_rate": 0.05, "timeout_s": 60},
    "challenge": {
        "steps": [10, 50],
        "min_samples": 200,
        "metric": "error_rate",
        "max_error_rate": 0.2,
        "step_timeout_s": 60,
    },
    "bake": {"duration_s": 0.5, "max_error_rate": 0.05, "check_interval_s": 0.1},
}


class Stack:
    def __init__(self, root: Path, registry: Registry) -> None:
        self.root = root
        self.registry = registry
        self.db = registry.db
        self.routing = Routing(self.db, registry, ack_timeout_s=1)
        self.rollouts = Rollouts(self.db, registry, self.routing)
        self.monitor = Monitor(self.db, registry, root / "log", writer="test")
        self.controller = Controller(self.db, self.rollouts, self.routing, self.monitor)
        for value in (1, 2, 3):
            registry.register(NewVersion(
                model="m", source=constant_model(root / f"v{value}", value), flavor="python"
            ))  # fmt: skip
        Deployments(self.db, registry).create(NewDeployment(name="d", model="m", version=1))

    def answers(self, version: int, role: str, n: int, *, errors: int = 0) -> None:
        """`n` logged answers of `version` in `role`, the first `errors` of them failed."""
        now = datetime.now(UTC)
        rows = [
            {"prediction_id": new_prediction_id(), "deployment": "d", "revision": 1,
             "model": "m", "version": version, "role": role, "ts": now, "latency_ms": 1.0,
             "outcome": "error" if i < errors else "ok", "inputs": None,
             "output": None if i < errors else "1.0", "probabilities": None, "error": None}
            for i in range(n)
        ]  # fmt: skip
        table = pa.Table.from_pylist(rows, schema=PREDICTION_SCHEMA)
        write_segment(self.root / "log", "predictions", "test", table)

    def state(self) -> tuple[str, str]:
        status = self.rollouts.status("d").rollout
        return status.state, status.step


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with open_registry(tmp_path) as registry:
        yield Stack(tmp_path, registry)


def test_a_good_version_walks_through_every_gate_into_production(stack: Stack) -> None:
    stack.rollouts.start("d", 2, PLAN, actor="alice")
    assert stack.state() == ("running", "warmup")
    stack.controller.tick()  # routing follows the step: 2 shadows the champion
    config = stack.routing.current("d")
    assert config.shadows == {2: 100.0}
    assert stack.state() == ("running", "warmup")  # no evidence yet: wait
    stack.answers(1, "champion", 30)
    stack.answers(2, "shadow", 30)
    stack.controller.tick()
    assert stack.state() == ("running", "challenge:10")
    stack.controller.tick()
    assert stack.routing.current("d").challengers == {2: 10.0}
    stack.answers(1, "champion", 2000, errors=200)
    stack.answers(2, "challenger", 2000, errors=0)
    stack.controller.tick()
    assert stack.state() == ("running", "challenge:50")
    stack.controller.tick()
    stack.answers(1, "champion", 2000, errors=200)
    stack.answers(2, "challenger", 2000, errors=0)
    stack.controller.tick()
    assert stack.state() == ("running", "promote")
    stack.controller.tick()
    assert stack.routing.current("d").champion == 2
    assert stack.state() == ("running", "bake")
    time.sleep(0.6)
    stack.answers(2, "champion", 100)
    stack.controller.tick()
    assert stack.state()[0] == "succeeded"
    kinds = [e["kind"] for e in stack.rollouts.status("d").events]
    assert kinds[0] == "started"
    assert "promoted" in kinds
    assert kinds[-1] == "succeeded"


def test_a_failing_shadow_stops_at_warm_up_and_routing_returns(stack: Stack) -> None:
    stack.rollouts.start("d", 2, PLAN, actor="alice")
    stack.controller.tick()
    assert stack.routing.current("d").shadows == {2: 100.0}
    stack.answers(2, "shadow", 40, errors=20)
    stack.controller.tick()
    state, step = stack.state()
    assert (state, step) == ("failed", "warmup")
    assert stack.routing.current("d").shadows == {}
    assert stack.routing.current("d").champion == 1


def test_abort_returns_traffic_to_the_champion_at_once(stack: Stack) -> None:
    stack.rollouts.start("d", 2, PLAN, actor="alice")
    stack.controller.tick()
    stack.answers(1, "champion", 30)
    stack.answers(2, "shadow", 30)
    stack.controller.tick()
    stack.controller.tick()
    assert stack.routing.current("d").challengers == {2: 10.0}
    stack.rollouts.abort("d", actor="bob")
    assert stack.routing.current("d").challengers == {}
    assert stack.state()[0] == "aborted"
    with pytest.raises(Conflict):
        stack.rollouts.abort("d", actor="bob")


def test_a_restarted_controller_resumes_without_applying_a_step_twice(stack: Stack) -> None:
    stack.rollouts.start("d", 2, {**PLAN, "warmup": None}, actor="alice")
    stack.controller.tick()
    stack.answers(1, "champion", 2000, errors=200)
    stack.answers(2, "challenger", 2000)
    stack.controller.tick()
    assert stack.state() == ("running", "challenge:50")
    stack.controller.stop()  # killed between looks
    again = Controller(stack.db, stack.rollouts, stack.routing, stack.monitor)
    again.tick()  # routing for the step it found
    assert stack.routing.current("d").challengers == {2: 50.0}
    history = Deployments(stack.db, stack.registry).history
    revisions = len(history("d"))
    again.tick()  # the same step again: routing already matches, no new revision
    assert len(history("d")) == revisions


def test_a_breach_while_baking_rolls_back(stack: Stack) -> None:
    plan = {**PLAN, "warmup": None, "challenge": None, "bake": {"duration_s": 60}}
    stack.rollouts.start("d", 2, plan, actor="alice")
    stack.controller.tick()  # promote
    assert stack.routing.current("d").champion == 2
    stack.answers(2, "champion", 100, errors=50)
    stack.controller.tick()
    assert stack.state()[0] == "rolled_back"
    assert stack.routing.current("d").champion == 1


def test_a_newer_version_supersedes_the_running_rollout(stack: Stack) -> None:
    stack.rollouts.start("d", 2, PLAN, actor="alice")
    stack.controller.tick()
    stack.rollouts.start("d", 3, PLAN, actor="alice")
    stack.controller.tick()
    assert stack.routing.current("d").shadows == {3: 100.0}
    assert stack.rollouts.status("d").rollout.version == 3


def test_only_one_controller_leads(stack: Stack) -> None:
    other = Controller(stack.db, stack.rollouts, stack.routing, stack.monitor)
    assert stack.controller.lead()
    assert not other.lead()
    stack.controller.stop()  # releases the lease
    assert other.lead()


def test_a_webhook_hears_every_move_of_a_rollout(stack: Stack, receiver: Receiver) -> None:
    notifier = Notifier(receiver.url, attempts=2, backoff_s=0.05)
    stack.rollouts.notifier = notifier
    stack.controller.notifier = notifier
    notifier.start()
    stack.rollouts.start("d", 2, PLAN, actor="alice")
    stack.controller.tick()
    stack.answers(1, "champion", 30)
    stack.answers(2, "shadow", 30)
    stack.controller.tick()  # warm-up passes
    stack.rollouts.abort("d", actor="bob")
    notifier.close()
    events = receiver.delivered()
    assert [e["kind"] for e in events] == ["started", "passed", "aborted"]
    assert {e["deployment"] for e in events} == {"d"}
    assert events[1]["step"] == "warmup"


def graded_traffic(stack: Stack, n: int, actual: float) -> None:
    """`n` champion answers (version 1 answers 1.0) with their inputs and an actual each."""
    now = datetime.now(UTC)
    ids = [new_prediction_id() for _ in range(n)]
    inputs = orjson.dumps(ROW).decode()
    answers = [
        {"prediction_id": i, "deployment": "d", "revision": 1, "model": "m", "version": 1,
         "role": "champion", "ts": now, "latency_ms": 1.0, "outcome": "ok", "inputs": inputs,
         "output": "1.0", "probabilities": None, "error": None}
        for i in ids
    ]  # fmt: skip
    write_segment(stack.root / "log", "predictions", "test",
                  pa.Table.from_pylist(answers, schema=PREDICTION_SCHEMA))  # fmt: skip
    actuals = [
        {"prediction_id": i, "deployment": "d", "actual": orjson.dumps(actual).decode(),
         "received_at": now, "revision": 1, "model": "m", "version": 1, "role": "champion",
         "predicted_at": now, "outcome": "ok", "output": "1.0", "probabilities": None}
        for i in ids
    ]  # fmt: skip
    write_segment(stack.root / "log", "actuals", "test",
                  pa.Table.from_pylist(actuals, schema=ACTUAL_SCHEMA))  # fmt: skip


def in_process(registry: Registry) -> Callable[[str, int, Any], Any]:
    def score(model: str, version: int, rows: Any) -> Any:
        return registry.load(registry.get_version(model, version)).predict(rows)

    return score


VALIDATE = {"validate": {"min_rows": 50, "max_metrics": {"mae": 0.5},
                         "max_regression": {"mae": 0.5}},
            "warmup": None, "challenge": None, "bake": {"duration_s": 60}}  # fmt: skip


def test_validation_scores_the_candidate_on_labelled_traffic(stack: Stack) -> None:
    """Version 1 (champion) and 3 answer 1.0 and 3.0; the actuals are 1.0: version 3's
    mean absolute error of 2 fails the plan's ceiling of 0.5, before any live traffic."""
    stack.controller.predict = in_process(stack.registry)
    stack.rollouts.start("d", 3, VALIDATE, actor="alice")
    stack.controller.tick()
    assert stack.state() == ("running", "validate")  # no labelled rows yet: wait
    graded_traffic(stack, 60, actual=1.0)
    stack.controller.tick()
    status = stack.rollouts.status("d")
    assert status.rollout.state == "failed"
    assert "mae" in status.rollout.reason
    assert stack.routing.current("d").champion == 1


def test_validation_passes_a_candidate_as_good_as_the_champion(stack: Stack) -> None:
    stack.controller.predict = in_process(stack.registry)
    graded_traffic(stack, 60, actual=1.5)
    plan = {**VALIDATE, "validate": {"min_rows": 50, "max_regression": {"mae": 0.1}}}
    stack.rollouts.start("d", 2, plan, actor="alice")  # answers 2.0: mae 0.5, as version 1
    stack.controller.tick()
    assert stack.state() == ("running", "promote")
    verdict = stack.rollouts.status("d").rollout.state_detail["verdicts"]["validate"]
    assert verdict["outcome"] == "pass"


def test_a_breach_the_old_champion_had_as_well_aborts_instead_of_blaming(stack: Stack) -> None:
    """The old champion was failing as often before the promotion: the new version is not
    to blame, so the rollout stops (aborted, with the evidence) and routing goes back."""
    plan = {**PLAN, "warmup": None, "challenge": None, "bake": {"duration_s": 60}}
    stack.rollouts.start("d", 2, plan, actor="alice")
    stack.answers(1, "champion", 100, errors=50)  # before the promotion
    stack.controller.tick()  # promote
    assert stack.routing.current("d").champion == 2
    stack.answers(2, "champion", 100, errors=50)
    stack.controller.tick()
    status = stack.rollouts.status("d").rollout
    assert status.state == "aborted"
    assert status.state_detail["verdicts"]["bake"]["evidence"]["both_bad"] is True
    assert stack.routing.current("d").champion == 1


def test_while_baking_the_previous_champion_answers_a_mirrored_share(stack: Stack) -> None:
    """After the promotion the old champion shadows 10% of traffic. When it fails the same
    traffic as the new champion, the cause is shared: the rollout is aborted, not blamed."""
    plan = {**PLAN, "warmup": None, "challenge": None, "bake": {"duration_s": 60}}
    stack.rollouts.start("d", 2, plan, actor="alice")
    stack.controller.tick()  # promote
    stack.controller.tick()  # the bake's first look starts the mirror
    assert stack.routing.current("d").shadows == {1: 10.0}
    stack.answers(2, "champion", 300, errors=60)
    stack.answers(1, "shadow", 30, errors=6)
    stack.controller.tick()
    status = stack.rollouts.status("d").rollout
    assert status.state == "aborted"
    evidence = status.state_detail["verdicts"]["bake"]["evidence"]
    assert evidence["both_bad"] is True
    assert evidence["previous_mirrored"] is True
    assert stack.routing.current("d").champion == 1


def test_a_healthy_mirror_leaves_the_blame_on_the_new_version(stack: Stack) -> None:
    plan = {**PLAN, "warmup": None, "challenge": None, "bake": {"duration_s": 60}}
    stack.rollouts.start("d", 2, plan, actor="alice")
    stack.controller.tick()
    stack.controller.tick()
    stack.answers(2, "champion", 300, errors=60)
    stack.answers(1, "shadow", 30)
    stack.controller.tick()
    assert stack.state()[0] == "rolled_back"
    assert stack.routing.current("d").champion == 1


def test_the_mirror_ends_with_a_successful_bake(stack: Stack) -> None:
    plan = {**PLAN, "warmup": None, "challenge": None,
            "bake": {"duration_s": 0.3, "check_interval_s": 0.1}}  # fmt: skip
    stack.rollouts.start("d", 2, plan, actor="alice")
    stack.controller.tick()
    stack.controller.tick()
    assert stack.routing.current("d").shadows == {1: 10.0}
    time.sleep(0.4)
    stack.answers(2, "champion", 100)
    stack.controller.tick()
    assert stack.state()[0] == "succeeded"
    config = stack.routing.current("d")
    assert (config.champion, config.shadows) == (2, {})


def test_each_challenge_step_waits_for_its_own_samples_when_shares_are_uneven(
    stack: Stack,
) -> None:
    """Steps of 5%, 30% and 55% of 400 requests a round give the challenger 20, 120 and
    220 answers a round, the champion 380, 280 and 180. With 200 samples per arm needed in
    each step (nothing carried over from the step before), the steps can pass after 10,
    2 and 2 rounds: never sooner, whatever the test thinks of the evidence."""
    plan = {
        "warmup": None,
        "challenge": {"steps": [5, 30, 55], "min_samples": 200, "metric": "error_rate",
                      "max_error_rate": 0.5, "step_timeout_s": 600},
        "bake": {"duration_s": 60},
    }  # fmt: skip
    stack.rollouts.start("d", 2, plan, actor="alice")
    passed_after: dict[str, int] = {}
    rounds = 0
    while stack.state()[1] != "promote" and rounds < 40:
        step = stack.state()[1]
        stack.controller.tick()  # routing follows the step
        share = float(step.partition(":")[2])
        assert stack.routing.current("d").challengers == {2: share}
        rounds += 1
        challenger = round(400 * share / 100)
        stack.answers(1, "champion", 400 - challenger, errors=(400 - challenger) // 4)
        stack.answers(2, "challenger", challenger)
        stack.controller.tick()
        if stack.state()[1] != step:
            passed_after[step] = rounds
    assert passed_after == {"challenge:5": 10, "challenge:30": 12, "challenge:55": 14}
    verdicts = stack.rollouts.status("d").rollout.state_detail["verdicts"]
    for step in passed_after:
        samples = verdicts[step]["evidence"]["samples"]
        assert min(samples.values()) >= 200


def test_a_challenge_step_is_held_for_its_minimum_time(stack: Stack) -> None:
    plan = {
        "warmup": None,
        "challenge": {"steps": [50], "min_samples": 200, "metric": "error_rate",
                      "max_error_rate": 0.5, "min_step_s": 2.0},
        "bake": {"duration_s": 60},
    }  # fmt: skip
    stack.rollouts.start("d", 2, plan, actor="alice")
    started = time.monotonic()
    stack.controller.tick()
    stack.answers(1, "champion", 1000, errors=300)
    stack.answers(2, "challenger", 1000)
    stack.controller.tick()
    if time.monotonic() - started < 2.0:  # decided, but held for the step's minimum
        assert stack.state() == ("running", "challenge:50")
        verdict = stack.rollouts.status("d").rollout.state_detail["verdicts"]["challenge:50"]
        assert "runs at least 2 s" in verdict["reason"]
    time.sleep(max(0.0, 2.1 - (time.monotonic() - started)))
    stack.controller.tick()
    assert stack.state() == ("running", "promote")


def test_direct_calls_are_no_evidence_for_any_gate(stack: Stack) -> None:
    """Answers to calls by version number (role `direct`) never count as a shadow's,
    challenger's or champion's: a gate waiting for samples keeps waiting."""
    stack.rollouts.start("d", 2, PLAN, actor="alice")
    stack.controller.tick()
    stack.answers(1, "direct", 500)
    stack.answers(2, "direct", 500)
    stack.controller.tick()
    assert stack.state() == ("running", "warmup")
    stack.answers(1, "champion", 30)
    stack.answers(2, "shadow", 30)
    stack.controller.tick()
    assert stack.state() == ("running", "challenge:10")
    stack.controller.tick()
    stack.answers(1, "champion", 2000, errors=200)
    stack.answers(2, "direct", 5000)
    stack.controller.tick()
    assert stack.state() == ("running", "challenge:10")


APPROVED_PLAN: dict[str, Any] = {"warmup": None, "challenge": None, "approve": True,
                                 "bake": {"duration_s": 60}}  # fmt: skip


def test_the_token_that_started_a_rollout_cannot_approve_it(stack: Stack) -> None:
    stack.rollouts.start("d", 2, APPROVED_PLAN, actor="alice")
    stack.controller.tick()
    assert stack.state() == ("waiting_approval", "approve")
    with pytest.raises(Forbidden, match="'alice' started this rollout and may not approve it"):
        stack.rollouts.approve("d", actor="alice")
    assert stack.state() == ("waiting_approval", "approve")
    stack.rollouts.approve("d", actor="bob")
    assert stack.state() == ("running", "promote")
    approved = [e for e in stack.rollouts.status("d").events if e["kind"] == "approved"]
    assert [e["detail"] for e in approved] == [{"by": "bob"}]


def test_a_plan_may_let_the_starter_approve(stack: Stack) -> None:
    plan = {**APPROVED_PLAN, "approve": {"separate": False}}
    stack.rollouts.start("d", 2, plan, actor="alice")
    stack.controller.tick()
    stack.rollouts.approve("d", actor="alice")
    assert stack.state() == ("running", "promote")
