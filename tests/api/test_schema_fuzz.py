"""A bounded schemathesis run over the management API: generated requests for every
operation in the OpenAPI document, none of which may get a 5xx."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.server import LiveServer

pytestmark = [pytest.mark.server, pytest.mark.slow]

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


def test_no_generated_request_gets_a_server_error(tmp_path: Path) -> None:
    server = LiveServer(tmp_path / "home").start()
    try:
        result = subprocess.run(
            [
                str(SCHEMATHESIS), "run", f"{server.url}/api/v1/openapi.json",
                "--checks", "not_a_server_error",
                "--phases", "coverage,fuzzing",
                "--max-examples", "8",
                "--seed", "1",
                "--exclude-method", "DELETE",  # deleting what others test against
                "-H", f"Authorization: Bearer {server.token}",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )  # fmt: skip
    finally:
        server.stop()
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert " passed" in result.stdout
