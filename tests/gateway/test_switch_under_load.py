"""Promote and rollback under continuous load on loopback drop no request (1 and 2 workers)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.fixtures.load import finish, post_script, start_wrk
from tests.fixtures.models import breast_cancer, save_joblib, sklearn_pipeline
from tests.fixtures.server import LiveServer

pytestmark = [pytest.mark.server, pytest.mark.slow]


@pytest.mark.parametrize("workers", [1, 2])
def test_promote_and_rollback_under_load_fail_no_request(tmp_path: Path, workers: int) -> None:
    server = LiveServer(tmp_path / "home", workers=workers).start()
    try:
        with server.client() as client:
            for c in (1.0, 0.01):
                client.register("bc", save_joblib(sklearn_pipeline(c), tmp_path), flavor="sklearn")
            client.create_deployment("bc-prod", model="bc", version=1)
            row = breast_cancer()[0].iloc[0].tolist()
            script = post_script(tmp_path, {"instances": [row]})
            load = start_wrk(
                f"{server.url}/v1/deployments/bc-prod/predict", script, connections=8, duration_s=8
            )
            time.sleep(2)
            promoted = client.promote("bc-prod", version=2)
            assert promoted["acknowledged"], promoted
            assert len(promoted["workers"]) == workers
            time.sleep(2)
            rolled_back = client.rollback("bc-prod")
            assert rolled_back["acknowledged"], rolled_back
            time.sleep(1)
            promoted_again = client.promote("bc-prod", version=2)
            assert promoted_again["acknowledged"]
            result = finish(load)
            deadline = time.monotonic() + 15  # workers report their counters every second
            while True:
                traffic = client.show_deployment("bc-prod")["traffic"]
                counted = sum(t["requests"] for t in traffic if t["role"] == "champion")
                if counted >= result.requests or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
        assert result.requests > 500, result.output
        assert result.failed == 0, result.output
        served = {t["version"]: t["requests"] for t in traffic if t["role"] == "champion"}
        assert served.get(1, 0) > 0
        assert served.get(2, 0) > 0, (traffic, promoted, rolled_back, promoted_again)
        assert sum(t["errors"] for t in traffic) == 0
    finally:
        server.stop()
