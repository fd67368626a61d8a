"""A sampled share of requests logs its inputs and outputs: a request is drawn once, so its
champion's and its shadow's rows in the prediction log agree on whether inputs were kept."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pyarrow.dataset as ds
import pytest

from tests.fixtures.hosting import ROWS, small_model
from tests.fixtures.server import LiveServer

pytestmark = pytest.mark.server

REQUESTS = 60


def logged(home: Path) -> list[dict[str, object]]:
    folder = home / "artifacts" / "log" / "predictions"
    if not folder.exists():
        return []
    files = [str(p) for p in folder.rglob("*.parquet")]
    if not files:
        return []
    table = ds.dataset(files, format="parquet").to_table(
        columns=["prediction_id", "role", "inputs"]
    )
    return table.to_pylist()


def test_a_requests_champion_and_shadow_rows_agree_on_keeping_inputs(tmp_path: Path) -> None:
    server = LiveServer(tmp_path / "home", env={"TURNOUT_LOG_FLUSH_MS": "200"}).start()
    try:
        with server.client() as client:
            for seed in (1, 2):
                client.register("m", small_model(tmp_path / "models", seed)[0], flavor="sklearn")
            client.create_deployment("d", model="m", version=1)
            client.route("d", shadows={2: 100}, log_payloads=0.5)
        for _ in range(REQUESTS):
            reply = httpx.post(
                f"{server.url}/v1/deployments/d/predict",
                json={"instances": ROWS[:1].tolist()},
                timeout=30,
            )
            assert reply.status_code == 200, reply.text
        deadline = time.monotonic() + 60
        rows = logged(server.home)
        while sum(r["role"] == "shadow" for r in rows) < REQUESTS:
            assert time.monotonic() < deadline, "the shadow's rows never all reached the log"
            time.sleep(0.3)
            rows = logged(server.home)
        kept: dict[str, dict[str, bool]] = {}
        for row in rows:
            kept.setdefault(str(row["prediction_id"]), {})[str(row["role"])] = (
                row["inputs"] is not None
            )
        assert len(kept) == REQUESTS
        assert all(roles["champion"] == roles["shadow"] for roles in kept.values()), kept
        sampled = sum(roles["champion"] for roles in kept.values())
        assert 0 < sampled < REQUESTS  # a share, not all or nothing
    finally:
        server.stop()
