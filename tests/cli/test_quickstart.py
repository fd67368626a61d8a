"""`turnout quickstart` walks the whole lifecycle on a server: what it leaves behind there
(versions, revisions, roles that answered, rollouts, a retrain) is what it did."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.server import LiveServer
from turnout.client import Client
from turnout.examples.local_server import free_port, start_server

pytestmark = [pytest.mark.server, pytest.mark.slow]

MODEL = "breast-cancer"
PROD = "breast-cancer-prod"


@pytest.fixture(scope="module")
def toured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    """A server the quickstart has been run against, once for the whole module."""
    home = tmp_path_factory.mktemp("quickstart") / "home"
    server = LiveServer(home, env={"TURNOUT_CONTROLLER_INTERVAL_MS": "500"}).start()
    env = {**os.environ, "TURNOUT_URL": server.url, "TURNOUT_TOKEN": server.token}
    try:
        result = subprocess.run(
            [sys.executable, "-m", "turnout", "quickstart", "--requests", "60"],
            env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        client = server.client()
        yield client
        client.close()
    finally:
        server.stop()


def roles(client: Client, deployment: str) -> dict[tuple[int, str], int]:
    """Requests answered per (version, role)."""
    traffic = client.show_deployment(deployment)["traffic"]
    return {(row["version"], row["role"]): row["requests"] for row in traffic}


def test_it_registers_two_trained_versions_then_the_scenarios_own(toured: Client) -> None:
    versions = {v["version"]: v for v in toured.show_model(MODEL)["version_list"]}
    assert sorted(versions) == [1, 2, 3, 4, 5, 6, 7]
    assert [versions[v]["flavor"] for v in (1, 2, 3, 4, 5)] == ["sklearn"] * 2 + ["python"] * 3


def test_it_shadows_challenges_promotes_and_rolls_back(toured: Client) -> None:
    history = toured.history(PROD)[:5]
    assert [r["config"]["champion"] for r in history] == [1, 1, 1, 2, 1]
    assert history[1]["config"]["shadows"] == {"2": 100.0}
    assert history[2]["config"]["challengers"] == {"2": 30.0}
    assert history[4]["reason"] == "rollback to revision 3"
    answered = roles(toured, PROD)
    assert answered[(2, "shadow")] > 0
    assert answered[(2, "challenger")] > 0
    assert answered[(2, "champion")] > 0


def test_a_broken_version_is_stopped_at_warmup(toured: Client) -> None:
    events = [(e["step"], e["kind"]) for e in toured.rollout_history(PROD) if e["version"] == 3]
    assert events == [("warmup", "started"), ("warmup", "failed")]


def test_a_hanging_champion_is_answered_by_failover_then_by_fallback(toured: Client) -> None:
    guarded = roles(toured, f"{MODEL}-guarded")
    assert guarded.get((2, "failover"), 0) > 0
    bare = roles(toured, f"{MODEL}-fallback")
    assert bare[(5, "fallback")] == 20
    assert bare.get((5, "champion"), 0) == 0


def test_drift_retrains_and_the_new_version_is_rolled_out(toured: Client) -> None:
    job: dict[str, Any] = toured.jobs(deployment=f"{MODEL}-scanner")[0]
    assert (job["state"], job["trigger"], job["result"]["version"]) == ("succeeded", "drift", 7)
    assert toured.lineage(MODEL, 7)[0]["parent_version"] == 6
    assert toured.show_deployment(f"{MODEL}-scanner")["champion"] == 7


def test_a_server_the_quickstart_starts_is_removed_with_its_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    server = start_server(home, free_port(), temporary=True)
    try:
        assert (home / "admin.token").exists()
        with server.client() as client:
            assert client.ready()
    finally:
        server.stop()
    assert server.process.poll() is not None
    assert not home.exists()
