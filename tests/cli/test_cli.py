"""The `turnout` command as a user runs it, against a live server, with and without --json."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.cli import turnout
from tests.fixtures.models import save_joblib, sklearn_pipeline, training_csv
from tests.fixtures.server import LiveServer

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path_factory.mktemp("cli") / "home").start()
    yield live
    live.stop()


def test_register_deploy_and_read_back(server: LiveServer, tmp_path: Path) -> None:
    model = save_joblib(sklearn_pipeline(), tmp_path)
    data = training_csv(tmp_path)
    out = turnout(
        server, "models", "register", "cli-bc", str(model), "--flavor", "sklearn",
        "--metric", "accuracy=0.97", "--param", "C=1.0", "--tag", "team=risk",
        "--training-data", str(data), "--target", "target",
    )  # fmt: skip
    assert "registered cli-bc:1" in out.stdout
    listed = json.loads(turnout(server, "models", "list", "--json").stdout)
    assert {"name": "cli-bc", "versions": 1, "latest_version": 1}.items() <= listed[0].items()
    shown = json.loads(turnout(server, "models", "show", "cli-bc:1", "--json").stdout)
    assert shown["metrics"] == {"accuracy": 0.97}
    assert shown["params"] == {"C": "1.0"}
    assert shown["tags"] == {"team": "risk"}
    assert shown["training"]["target"] == "target"
    assert "cli-bc:1" in turnout(server, "models", "show", "cli-bc:1").stdout
    assert "sklearn" in turnout(server, "models", "show", "cli-bc").stdout

    created = turnout(
        server, "deployments", "create", "cli-prod", "--model", "cli-bc", "--version", "1",
        "--timeout-ms", "100", "--fallback", "0",
    )  # fmt: skip
    assert "deployment cli-prod serves cli-bc:1" in created.stdout
    deployments = json.loads(turnout(server, "deployments", "list", "--json").stdout)
    assert [(d["name"], d["champion"], d["fallback"]) for d in deployments] == [("cli-prod", 1, 0)]
    shown = json.loads(turnout(server, "deployments", "show", "cli-prod", "--json").stdout)
    assert shown["timeout_ms"] == 100
    history = json.loads(turnout(server, "deployments", "history", "cli-prod", "--json").stdout)
    assert [r["revision"] for r in history] == [1]
    assert "cli-prod" in turnout(server, "deployments", "list").stdout


def test_errors_are_messages_not_tracebacks(server: LiveServer, tmp_path: Path) -> None:
    cases = [
        (["models", "show", "ghost"], "model 'ghost' not found"),
        (["models", "show", "ghost:x"], "invalid version"),
        (["deployments", "show", "ghost"], "deployment 'ghost' not found"),
        (["models", "register", "m", str(tmp_path / "missing.joblib"), "--flavor", "sklearn"],
         "does not exist"),
        (["deployments", "create", "d", "--model", "ghost", "--fallback", "{bad"],
         "--fallback must be JSON"),
        (["models", "register", "m", str(tmp_path), "--flavor", "sklearn", "--metric", "auc"],
         "key=value"),
    ]  # fmt: skip
    for args, message in cases:
        result = turnout(server, *args, check=False)
        assert result.returncode != 0, args
        assert message in " ".join((result.stderr + result.stdout).split()), (args, result.stderr)
        assert "Traceback" not in result.stderr


def test_unreachable_server_says_so(tmp_path: Path) -> None:
    env = {**os.environ, "TURNOUT_URL": "http://127.0.0.1:9", "TURNOUT_HOME": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "turnout", "models", "list"], env=env, capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    assert "cannot reach turnout" in result.stderr
    assert "Traceback" not in result.stderr


def test_tokens_commands(server: LiveServer) -> None:
    created = json.loads(
        turnout(server, "tokens", "create", "robot", "--role", "deployer", "--json").stdout
    )
    assert created["role"] == "deployer"
    assert created["token"].startswith("tnt_")
    names = [t["name"] for t in json.loads(turnout(server, "tokens", "list", "--json").stdout)]
    assert "robot" in names
