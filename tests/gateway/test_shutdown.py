"""SIGTERM: readiness goes false first, in-flight requests finish, then the server exits."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.fixtures.server import LiveServer

pytestmark = pytest.mark.server

SLOW = """
import time
import numpy as np


class Model:
    n_features = 30

    def predict(self, X):
        if X[0][0] > 1000:
            time.sleep(0.8)
        return np.ones(len(X), dtype=np.int64)
"""


def test_sigterm_drains_in_flight_requests(tmp_path: Path) -> None:
    (tmp_path / "slow.py").write_text(SLOW)
    server = LiveServer(tmp_path / "home", env={"TURNOUT_SHUTDOWN_GRACE_MS": "1500"}).start()
    try:
        with server.client() as client:
            client.register("slow", tmp_path / "slow.py", flavor="python")
            client.create_deployment("slow-prod", model="slow", version=1)
        url = f"{server.url}/v1/deployments/slow-prod/predict"
        assert httpx.post(url, json={"instances": [[1.0] * 30]}).status_code == 200
        results: list[int] = []

        def slow_request() -> None:
            response = httpx.post(url, json={"instances": [[5000.0] * 30]}, timeout=30)
            results.append(response.status_code)

        threads = [threading.Thread(target=slow_request) for _ in range(3)]
        for thread in threads:
            thread.start()
        time.sleep(0.2)
        assert server.process is not None
        os.kill(server.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 1.2  # within the grace period
        while httpx.get(f"{server.url}/v2/health/ready").status_code != 503:
            assert time.monotonic() < deadline, "readiness stayed up after SIGTERM"
            time.sleep(0.02)  # load balancers stop sending first
        assert httpx.get(f"{server.url}/v2/health/live").status_code == 200
        during_grace = httpx.post(url, json={"instances": [[1.0] * 30]})
        assert during_grace.status_code == 200  # still answering while draining
        for thread in threads:
            thread.join(timeout=30)
        assert results == [200, 200, 200]
        # a clean exit; uvicorn re-raises the signal it handled, so the status may say so
        assert server.process.wait(timeout=30) in (0, -signal.SIGTERM)
        log = server.log.read_text()
        assert "Traceback" not in log
    finally:
        server.stop()
