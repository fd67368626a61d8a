"""`turnout quickstart` runs the lifecycle end to end and exits 0."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.server
@pytest.mark.slow
def test_quickstart_runs_to_completion(tmp_path: Path) -> None:
    env = {**os.environ, "TURNOUT_HOME": str(tmp_path / "home"), "COLUMNS": "200"}
    env["TURNOUT_URL"] = "http://127.0.0.1:9"  # no server there: the quickstart starts its own
    env.pop("TURNOUT_TOKEN", None)
    result = subprocess.run(
        [sys.executable, "-m", "turnout", "quickstart", "--requests", "60"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "registered breast-cancer:1" in out
    assert "registered breast-cancer:2" in out
    assert "deployed breast-cancer:1 as breast-cancer-prod" in out
    assert "1. champion breast-cancer:1 alone" in out
    assert "shadow breast-cancer:2:" in out
    assert "3. champion and challenger (A/B)" in out
    assert "challenger" in out
    assert "blue-green promote: breast-cancer:2 is champion at revision 4" in out
    assert "rollback: revision 5 re-activates revision 3" in out
    assert "5. breast-cancer-guarded: champion hangs" in out
    assert "failover" in out
    assert "5. breast-cancer-fallback: champion hangs" in out
    assert "│ fallback │" in out
    assert "(drift trigger) registered breast-cancer:7" in out
    assert "rollout of breast-cancer:7: succeeded" in out
    assert "lineage of breast-cancer:7" in out
