"""Rollouts end to end in a real server: live traffic, the embedded controller, the CLI."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.fixtures.routing_models import ROW, constant_model, raising_model
from tests.fixtures.server import LiveServer
from tests.fixtures.traffic import Traffic
from turnout.client import Client

pytestmark = pytest.mark.server

FAST_PLAN = """
warmup:
  min_requests: 40
  timeout_s: 60
challenge:
  steps: [50]
  metric: error_rate
  margin: -0.01          # as good as the champion, within 1 point of error rate
  min_samples: 100
  step_timeout_s: 60
bake:
  duration_s: 2
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(
        tmp_path_factory.mktemp("rollouts") / "home",
        env={"TURNOUT_CONTROLLER_INTERVAL_MS": "300", "TURNOUT_LOG_FLUSH_MS": "200"},
    ).start()
    yield live
    live.stop()


def wait_for(client: Client, deployment: str, states: set[str], timeout_s: float = 90) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        status = client.rollout_status(deployment)
        if status["state"] in states or time.monotonic() > deadline:
            return status
        time.sleep(0.3)


def test_a_rollout_promotes_a_healthy_version_under_live_traffic(
    server: LiveServer, tmp_path: Path
) -> None:
    with server.client() as client:
        for value in (1, 2):
            client.register("good", constant_model(tmp_path / f"v{value}", value),
                            flavor="python")  # fmt: skip
        client.create_deployment("good-prod", model="good", version=1)
        with Traffic(server.url, "good-prod", [ROW]) as traffic:
            started = client.start_rollout("good-prod", version=2, plan=FAST_PLAN)
            assert started["step"] == "warmup"
            status = wait_for(client, "good-prod", {"succeeded", "failed", "rolled_back"})
        assert status["state"] == "succeeded", (status["step"], status["reason"])
        assert client.show_deployment("good-prod")["champion"] == 2
        assert traffic.failed == 0
        kinds = [e["kind"] for e in status["events"]]
        assert kinds[0] == "started"
        assert "promoted" in kinds


def test_a_failing_version_is_stopped_at_warm_up_and_callers_never_see_it(
    server: LiveServer, tmp_path: Path
) -> None:
    with server.client() as client:
        client.register("bad", constant_model(tmp_path / "v1", 1), flavor="python")
        client.register("bad", raising_model(tmp_path / "v2"), flavor="python")
        client.create_deployment("bad-prod", model="bad", version=1)
        with Traffic(server.url, "bad-prod", [ROW]) as traffic:
            client.start_rollout("bad-prod", version=2, plan=FAST_PLAN)
            status = wait_for(client, "bad-prod", {"succeeded", "failed", "rolled_back"})
        assert status["state"] == "failed", status
        assert status["step"] == "warmup"
        assert "error rate" in status["reason"]
        deployment = client.show_deployment("bad-prod")
        assert deployment["champion"] == 1
        assert deployment["shadows"] in ({}, [], None)
        assert traffic.failed == 0


def test_rollout_cli_start_status_abort(server: LiveServer, tmp_path: Path) -> None:
    with server.client() as client:
        for value in (1, 2):
            client.register("cli", constant_model(tmp_path / f"v{value}", value),
                            flavor="python")  # fmt: skip
        client.create_deployment("cli-prod", model="cli", version=1)
    plan = tmp_path / "plan.yaml"
    plan.write_text(FAST_PLAN.replace("min_requests: 40", "min_requests: 100000"))
    env = {**server.env, "TURNOUT_TOKEN": server.token}

    def turnout(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "turnout", *args], env=env,
                              capture_output=True, text=True, timeout=60, check=False)  # fmt: skip

    started = turnout("rollout", "start", "cli-prod", "--version", "2", "--plan", str(plan))
    assert started.returncode == 0, started.stderr
    status = turnout("rollout", "status", "cli-prod", "--json")
    assert orjson.loads(status.stdout)["state"] == "running"
    shown = turnout("rollout", "status", "cli-prod")
    assert "[warmup]" in shown.stdout  # the current step is marked
    aborted = turnout("rollout", "abort", "cli-prod", "--reason", "changed my mind")
    assert aborted.returncode == 0, aborted.stderr
    with server.client() as client:
        assert client.rollout_status("cli-prod")["state"] == "aborted"
        assert client.show_deployment("cli-prod")["shadows"] in ({}, [], None)
    listed = turnout("rollout", "history", "cli-prod", "--json")
    assert listed.returncode == 0, listed.stderr
    events = orjson.loads(listed.stdout)
    assert events[0]["kind"] == "started"
    assert events[-1]["kind"] == "aborted"
    assert events[-1]["detail"]["reason"] == "changed my mind"
    assert {e["version"] for e in events} == {2}
    history = turnout("deployments", "history", "cli-prod")
    assert history.returncode == 0, history.stderr
    assert "steps and verdicts" in history.stdout
    assert "changed my mind" in history.stdout
    revisions = orjson.loads(turnout("deployments", "history", "cli-prod", "--json").stdout)
    assert all("revision" in r for r in revisions)  # the JSON form still lists revisions
    bad = tmp_path / "bad.yaml"
    bad.write_text("challenge:\n  steps: [50, 10]\n")
    refused = turnout("rollout", "start", "cli-prod", "--version", "2", "--plan", str(bad))
    assert refused.returncode != 0
    assert "steps" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_validation_scores_the_candidate_in_its_runner_on_labelled_traffic(
    server: LiveServer, tmp_path: Path
) -> None:
    """Version 1 answers 1.0, version 2 answers 2.0; the actuals say 1.0. Version 2 is
    scored on the logged inputs in its own runner and stopped at validation."""
    with server.client() as client:
        for value in (1, 2):
            client.register("val", constant_model(tmp_path / f"v{value}", value),
                            flavor="python")  # fmt: skip
        client.create_deployment("val-prod", model="val", version=1)
        ids = [client.predict("val-prod", [ROW])["prediction_ids"][0] for _ in range(60)]
        report = client.post_actuals("val-prod", [{"prediction_id": i, "actual": 1.0}
                                                  for i in ids])  # fmt: skip
        assert report["accepted"] == 60
        plan = ("validate: {min_rows: 50, max_metrics: {mae: 0.5}}\n"
                "bake: {duration_s: 60}\n")  # fmt: skip
        client.start_rollout("val-prod", version=2, plan=plan)
        status = wait_for(client, "val-prod", {"succeeded", "failed", "rolled_back"})
        assert (status["state"], status["step"]) == ("failed", "validate"), status["reason"]
        evidence = status["verdicts"]["validate"]["evidence"]
        assert evidence["n"] == 60
        assert evidence["candidate"]["mae"] == pytest.approx(1.0)
        assert client.show_deployment("val-prod")["champion"] == 1
