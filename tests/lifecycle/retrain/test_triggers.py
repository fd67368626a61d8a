"""When a retrain fires: every trigger against its threshold with a fixed clock, what holds
them back, and the facts read from a real registry, jobs store and prediction log."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pytest
from sqlalchemy import Connection

from tests.fixtures import python_models as pm
from tests.fixtures.registry import open_registry
from turnout.lifecycle.deployments import Deployments, NewDeployment
from turnout.lifecycle.retrain.policy import RetrainPolicy
from turnout.lifecycle.retrain.triggers import Facts, decide, gather, window_text
from turnout.monitoring.layout import ACTUAL_SCHEMA, PREDICTION_SCHEMA, new_prediction_id
from turnout.monitoring.segments import write_segment
from turnout.monitoring.service import Monitor, Window
from turnout.registry.service import NewVersion
from turnout.store import jobs
from turnout.store.records import JobRecord

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
DAILY = "0 3 * * *"


def policy(cooldown: str = "6h", **triggers: Any) -> RetrainPolicy:
    return RetrainPolicy.parse(
        {"data": {"path": "train.csv"}, "triggers": triggers, "cooldown": cooldown}
    )


def facts(**values: Any) -> Facts:
    """Facts as of NOW, checked a minute ago, no retrain yet."""
    return Facts(**{"now": NOW, "checked_at": NOW - timedelta(minutes=1), **values})


def drift(*, rows: int = 400, **features: tuple[float, bool]) -> dict[str, Any]:
    """A drift section: feature name -> (psi, drifted)."""
    return {
        "rows": rows,
        "baseline": True,
        "features": {name: {"psi": psi, "drifted": d} for name, (psi, d) in features.items()},
    }


# -- each trigger against its threshold ---------------------------------------------------


@pytest.mark.parametrize(("psi", "fires"), [(0.19, False), (0.2, True), (0.35, True)])
def test_drift_psi_fires_at_and_above_its_threshold(psi: float, fires: bool) -> None:
    decision = decide(policy(drift_psi=0.2), facts(drift=drift(a=(psi, False), b=(0.01, False))))
    assert decision.fire is fires
    assert decision.trigger == ("drift" if fires else None)
    assert f"{psi:g} of feature 'a'" in decision.reason


@pytest.mark.parametrize(("drifted", "fires"), [(1, False), (2, True), (3, True)])
def test_drifted_features_counts_the_features_judged_drifted(drifted: int, fires: bool) -> None:
    features: dict[str, Any] = {name: (0.5, i < drifted) for i, name in enumerate("abc")}
    decision = decide(policy(drifted_features=2), facts(drift=drift(**features)))
    assert decision.fire is fires
    assert f"{drifted} feature{'' if drifted == 1 else 's'} drifted" in decision.reason
    assert decision.detail["triggers"]["drift"]["drifted"] == drifted


@pytest.mark.parametrize(("rows", "fires"), [(199, False), (200, True)])
def test_drift_waits_for_min_rows(rows: int, fires: bool) -> None:
    decision = decide(policy(drift_psi=0.2), facts(drift=drift(rows=rows, a=(0.9, True))))
    assert decision.fire is fires
    if not fires:
        assert "199 logged rows of the champion, fewer than the 200" in decision.reason


def test_unknown_drift_or_no_baseline_never_fires() -> None:
    rules = policy(drift_psi=0.2, drifted_features=1, min_rows=1)
    assert not decide(rules, facts(drift=None)).fire
    no_baseline = decide(rules, facts(drift={"rows": 500, "baseline": False, "features": {}}))
    assert not no_baseline.fire
    assert "no feature has a PSI" in no_baseline.reason


@pytest.mark.parametrize(("accuracy", "fires"), [(0.84, True), (0.85, False), (0.9, False)])
def test_accuracy_below_fires_strictly_below_its_threshold(accuracy: float, fires: bool) -> None:
    decision = decide(policy(accuracy_below=0.85), facts(accuracy=accuracy, actuals=300))
    assert decision.fire is fires
    assert decision.trigger == ("accuracy" if fires else None)
    assert f"live accuracy {accuracy:g} over 300 actuals is {'<' if fires else '>='} 0.85" in (
        decision.reason
    )


@pytest.mark.parametrize(("actuals", "fires"), [(199, False), (200, True)])
def test_accuracy_waits_for_min_actuals(actuals: int, fires: bool) -> None:
    decision = decide(policy(accuracy_below=0.85), facts(accuracy=0.5, actuals=actuals))
    assert decision.fire is fires


@pytest.mark.parametrize(("accuracy", "fires"), [(0.86, False), (0.85, False), (0.84, True)])
def test_accuracy_drop_is_measured_from_the_registered_metric(accuracy: float, fires: bool) -> None:
    """Registered 0.90: a drop of exactly 0.05 does not fire (0.90 - 0.85 is not taken as
    0.05000000000000004)."""
    decision = decide(
        policy(accuracy_drop=0.05),
        facts(accuracy=accuracy, actuals=300, registered_accuracy=0.9),
    )
    assert decision.fire is fires
    assert "below the registered 0.9" in decision.reason
    assert decision.detail["triggers"]["accuracy"]["registered_accuracy"] == 0.9


def test_accuracy_drop_without_a_registered_metric_never_fires() -> None:
    decision = decide(policy(accuracy_drop=0.05), facts(accuracy=0.1, actuals=300))
    assert not decision.fire
    assert "no registered accuracy" in decision.reason


@pytest.mark.parametrize(("new", "fires"), [(4999, False), (5000, True), (9000, True)])
def test_new_actuals_fire_at_their_threshold(new: int, fires: bool) -> None:
    decision = decide(policy(new_actuals=5000), facts(new_actuals=new))
    assert decision.fire is fires
    assert f"{new} new actuals since the last retrain, {'>=' if fires else '<'} 5000" in (
        decision.reason
    )


def test_triggers_left_out_are_off() -> None:
    alarming = facts(drift=drift(a=(5.0, True)), accuracy=0.1, actuals=10_000,
                     registered_accuracy=0.99, new_actuals=10**6)  # fmt: skip
    decision = decide(policy(), alarming)
    assert not decision.fire
    assert decision.reason == "no trigger fired: the policy sets no trigger"
    assert decision.detail["triggers"] == {}
    only_actuals = decide(policy(new_actuals=10**7), alarming)
    assert not only_actuals.fire
    assert list(only_actuals.detail["triggers"]) == ["actuals"]


# -- what holds triggers back -------------------------------------------------------------


def test_a_queued_or_running_job_holds_every_trigger() -> None:
    decision = decide(policy(drift_psi=0.2), facts(drift=drift(a=(0.5, True)), running=True))
    assert not decision.fire
    assert decision.trigger is None
    assert decision.reason.startswith("not retraining: a retrain job")
    assert "though drift over 400 rows" in decision.reason
    assert decision.detail["fired"] == ["drift"]


def test_cooldown_holds_until_it_ends_then_fires_again() -> None:
    rules = policy(cooldown="6h", new_actuals=10)
    started = NOW - timedelta(hours=6)
    for offset_s, fires in ((-1, False), (-0.001, False), (0, True), (1, True)):
        now = NOW + timedelta(seconds=offset_s)
        decision = decide(rules, facts(now=now, last_retrain_at=started, new_actuals=50))
        assert decision.fire is fires, offset_s
    held = decide(rules, facts(now=NOW - timedelta(hours=1), last_retrain_at=started,
                               new_actuals=50))  # fmt: skip
    assert held.reason == (
        "not retraining: cooling down until 2024-05-01 12:00:00 UTC (6h after the last retrain "
        "started at 2024-05-01 06:00:00 UTC), though 50 new actuals since the last retrain, "
        ">= 10"
    )


# -- schedules ----------------------------------------------------------------------------


def check_every(
    rules: RetrainPolicy, start: datetime, end: datetime, step: timedelta
) -> list[datetime]:
    """Evaluate like the controller: each check remembers the previous one."""
    fired: list[datetime] = []
    checked_at: datetime | None = None
    now = start
    while now <= end:
        if decide(rules, facts(now=now, checked_at=checked_at)).fire:
            fired.append(now)
        checked_at, now = now, now + step
    return fired


@pytest.mark.parametrize("second", [0, 30])
def test_a_daily_schedule_fires_once_for_its_slot_when_checked_every_minute(second: int) -> None:
    start = datetime(2024, 5, 1, 2, 50, second, tzinfo=UTC)
    end = datetime(2024, 5, 1, 3, 10, tzinfo=UTC)
    fired = check_every(policy(schedule=DAILY), start, end, timedelta(minutes=1))
    assert fired == [datetime(2024, 5, 1, 3, 0, second, tzinfo=UTC)]


def test_a_late_check_after_a_gap_fires_once() -> None:
    rules = policy(schedule=DAILY)
    before = datetime(2024, 5, 1, 2, 0, tzinfo=UTC)
    late = datetime(2024, 5, 3, 10, 0, tzinfo=UTC)  # three slots passed unchecked
    decision = decide(rules, facts(now=late, checked_at=before))
    assert decision.fire
    assert decision.trigger == "schedule"
    assert "'0 3 * * *' was due 2024-05-01 03:00:00 UTC" in decision.reason
    assert decision.detail["triggers"]["schedule"]["due"] == "2024-05-01T03:00:00+00:00"
    again = decide(rules, facts(now=late + timedelta(minutes=1), checked_at=late))
    assert not again.fire
    assert "next due 2024-05-04 03:00:00 UTC" in again.reason


def test_the_first_evaluation_only_arms_the_schedule() -> None:
    rules = policy(schedule=DAILY)
    at_the_slot = datetime(2024, 5, 1, 3, 0, tzinfo=UTC)
    first = decide(rules, facts(now=at_the_slot, checked_at=None))
    assert not first.fire
    assert "armed by this first check, next due 2024-05-02 03:00:00 UTC" in first.reason
    later = at_the_slot + timedelta(hours=23, minutes=59)
    assert not decide(rules, facts(now=later, checked_at=at_the_slot)).fire
    assert decide(rules, facts(now=later + timedelta(minutes=1), checked_at=later)).fire


def test_a_slot_at_the_previous_check_does_not_fire_again() -> None:
    slot = datetime(2024, 5, 1, 3, 0, tzinfo=UTC)
    rules = policy(schedule=DAILY)
    assert decide(rules, facts(now=slot, checked_at=slot - timedelta(seconds=1))).fire
    assert not decide(rules, facts(now=slot + timedelta(seconds=1), checked_at=slot)).fire


# -- precedence and wording ---------------------------------------------------------------


def test_the_first_trigger_in_order_names_the_retrain() -> None:
    everything = facts(drift=drift(a=(0.5, True)), accuracy=0.5, actuals=300,
                       registered_accuracy=0.9, new_actuals=100)  # fmt: skip
    slot = datetime(2024, 5, 1, 3, 0, tzinfo=UTC)
    scheduled = Facts(
        **{**everything.__dict__, "now": slot, "checked_at": slot - timedelta(minutes=1)}
    )
    all_four: dict[str, Any] = {"drift_psi": 0.2, "accuracy_below": 0.8, "new_actuals": 10}
    decision = decide(policy(schedule=DAILY, **all_four), scheduled)
    assert decision.trigger == "schedule"
    assert decision.reason.endswith("(drift, accuracy, actuals fired as well)")
    assert decision.detail["fired"] == ["schedule", "drift", "accuracy", "actuals"]
    assert decide(policy(**all_four), everything).trigger == "drift"
    assert decide(policy(accuracy_below=0.8, new_actuals=10), everything).trigger == "accuracy"
    assert decide(policy(new_actuals=10), everything).trigger == "actuals"


def test_the_reason_names_the_numbers_and_the_detail_holds_them() -> None:
    rules = policy(drift_psi=0.2, drifted_features=2, accuracy_below=0.85, accuracy_drop=0.05,
                   new_actuals=5000)  # fmt: skip
    quiet = facts(drift=drift(a=(0.08, False), b=(0.12, False)), accuracy=0.88, actuals=250,
                  registered_accuracy=0.9, new_actuals=1200)  # fmt: skip
    decision = decide(rules, quiet)
    assert not decision.fire
    assert decision.reason == (
        "no trigger fired: drift over 400 rows: the largest PSI, 0.12 of feature 'b', is < 0.2 "
        "and 0 features drifted, < 2; live accuracy 0.88 over 250 actuals is >= 0.85 and is "
        "0.02 below the registered 0.9, <= 0.05; 1200 new actuals since the last retrain, "
        "< 5000"
    )
    detail = decision.detail
    assert detail["triggers"]["drift"]["max_psi"] == 0.12
    assert detail["triggers"]["drift"]["drift_psi"] == 0.2
    assert detail["triggers"]["accuracy"]["accuracy"] == 0.88
    assert detail["triggers"]["accuracy"]["accuracy_below"] == 0.85
    assert detail["triggers"]["actuals"] == {"new_actuals": 1200, "threshold": 5000}
    assert orjson.loads(orjson.dumps(detail)) == detail

    loud = decide(rules, facts(drift=drift(a=(0.31, True)), accuracy=0.8, actuals=250))
    assert loud.reason == (
        "retrain on drift: drift over 400 rows: the largest PSI, 0.31 of feature 'a', is >= 0.2 "
        "and 1 feature drifted (a), < 2 (accuracy fired as well)"
    )


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(86400.0, "1d"), (90, "90s"), (5400, "90m"), (30 * 86400, "30d"), (1_000_001, "16667m")],
)
def test_the_window_is_written_as_monitoring_reads_it(seconds: float, text: str) -> None:
    assert window_text(seconds) == text
    Window.parse(text, now=NOW)


# -- gathering facts ----------------------------------------------------------------------


def answers(ids: list[str], a: np.ndarray, b: np.ndarray, when: datetime) -> pa.Table:
    rows = [
        {"prediction_id": i, "deployment": "d", "revision": 1, "model": "m", "version": 1,
         "role": "champion", "ts": when, "latency_ms": 1.0, "outcome": "ok",
         "inputs": orjson.dumps([x, y]).decode(), "output": "0", "probabilities": None,
         "error": None}
        for i, x, y in zip(ids, a.tolist(), b.tolist(), strict=True)
    ]  # fmt: skip
    return pa.Table.from_pylist(rows, schema=PREDICTION_SCHEMA)


def actuals(ids: list[str], labels: list[int], received: datetime) -> pa.Table:
    rows = [
        {"prediction_id": i, "deployment": "d", "actual": str(label), "received_at": received,
         "revision": 1, "model": "m", "version": 1, "role": "champion",
         "predicted_at": received - timedelta(minutes=30), "outcome": "ok", "output": "0",
         "probabilities": None}
        for i, label in zip(ids, labels, strict=True)
    ]  # fmt: skip
    return pa.Table.from_pylist(rows, schema=ACTUAL_SCHEMA)


def manual_job(conn: Connection) -> JobRecord:
    return jobs.insert_job(conn, deployment="d", model="m", parent_version=1, trigger="manual",
                           trigger_detail={}, spec={}, actor="test")  # fmt: skip


def test_gather_reads_drift_accuracy_and_new_actuals_of_the_champion(tmp_path: Path) -> None:
    """Version 1 (registered accuracy 0.9) answers 0. The last retrain started at T; facts
    are gathered at T + 10 min over a 1 h window. In the log: 400 answers at T - 30 min with
    feature `a` moved far from training and `b` as in training; actuals for 50 of them
    received at T - 20 min (all right), for 200 more at T + 1 min (150 right), and 100
    older ones at T - 2 h (all wrong, outside the window)."""
    rng = np.random.default_rng(7)
    train_b = rng.uniform(0.0, 1.0, 200)
    data = tmp_path / "train.csv"
    pd.DataFrame({"a": rng.uniform(0.0, 1.0, 200), "b": train_b, "y": 0}).to_csv(data, index=False)
    log = tmp_path / "log"
    with open_registry(tmp_path) as registry:
        registry.register(NewVersion(
            model="m", source=pm.write(tmp_path / "v1", pm.NO_SIGNATURE), flavor="python",
            training_data=data, target="y", metrics={"accuracy": 0.9},
        ))  # fmt: skip
        Deployments(registry.db, registry).create(NewDeployment(name="d", model="m", version=1))
        with registry.db.write() as conn:
            job = manual_job(conn)
            jobs.update_job(conn, job, state="succeeded")
        t = job.created_at
        ids = [new_prediction_id() for _ in range(400)]
        table = answers(
            ids, rng.uniform(5.0, 6.0, 400), np.tile(train_b, 2), t - timedelta(minutes=30)
        )
        write_segment(log, "predictions", "gw", table, now=t - timedelta(minutes=30))
        for labels, chosen, received in (
            ([0] * 50, ids[:50], t - timedelta(minutes=20)),
            ([0] * 150 + [1] * 50, ids[50:250], t + timedelta(minutes=1)),
            ([1] * 100, [new_prediction_id() for _ in range(100)], t - timedelta(hours=2)),
        ):
            table = actuals(chosen, labels, received)
            other = actuals([f"e{i}" for i in chosen], labels, received)
            other = other.set_column(1, "deployment", pa.array(["e"] * len(chosen)))
            # another deployment's actuals share the file; they count for it only
            write_segment(log, "actuals", "api", pa.concat_tables([table, other]), now=received)
        monitor = Monitor(registry.db, registry, log, writer="api")
        rules = policy(cooldown="5m", drift_psi=0.2, accuracy_drop=0.05, new_actuals=100,
                       window="1h", min_rows=50)  # fmt: skip
        state = {"checked_at": (t + timedelta(minutes=9)).isoformat()}
        now = t + timedelta(minutes=10)
        found = gather(monitor, registry, registry.db, "d", rules, state, now)

        assert found.now == now
        assert found.checked_at == t + timedelta(minutes=9)
        assert found.last_retrain_at == t
        assert found.running is False
        assert found.drift is not None
        assert found.drift["rows"] == 400
        assert found.drift["features"]["a"]["drifted"] is True
        assert found.drift["features"]["a"]["psi"] > 1.0
        assert found.drift["features"]["b"]["drifted"] is False
        assert found.drift["features"]["b"]["psi"] < 0.01
        assert found.actuals == 250
        assert found.accuracy == pytest.approx(0.8)
        assert found.registered_accuracy == 0.9
        assert found.new_actuals == 200
        decision = decide(rules, found)
        assert decision.trigger == "drift"
        assert decision.detail["fired"] == ["drift", "accuracy", "actuals"]

        with registry.db.write() as conn:
            manual_job(conn)
        schedule_only = policy(schedule=DAILY)
        quiet = gather(monitor, registry, registry.db, "d", schedule_only, {}, now)
        assert quiet.running is True
        assert quiet.checked_at is None
        assert (quiet.drift, quiet.accuracy, quiet.actuals, quiet.new_actuals) == (None, None, 0, 0)
        assert not decide(schedule_only, quiet).fire
