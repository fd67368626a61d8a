"""Several worker processes, and PostgreSQL as the metadata DB, serve the same answers."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.models import breast_cancer, save_joblib, sklearn_pipeline
from tests.fixtures.server import LiveServer
from turnout.client import Client

pytestmark = pytest.mark.server

REPORT_WAIT_S = 10.0
"""Workers report their revision with every heartbeat (about a second)."""


def exercise(server: LiveServer, tmp_path: Path) -> None:
    """Register, deploy, then predict at once from many connections: every answer is right,
    and every worker runs the deployment's revision."""
    pipeline = sklearn_pipeline()
    features, _ = breast_cancer()
    expected = pipeline.predict(features)
    with server.client() as client:
        client.register("bc", save_joblib(pipeline, tmp_path), flavor="sklearn")
        client.create_deployment("bc-prod", model="bc", version=1)
    with httpx.Client(
        base_url=server.url, limits=httpx.Limits(max_keepalive_connections=0)
    ) as http:
        for i in range(0, 120, 3):
            response = http.post(
                "/v1/deployments/bc-prod/predict",
                json={"instances": features.iloc[i : i + 3].to_numpy().tolist()},
            )
            assert response.status_code == 200, response.text
            assert response.json()["predictions"] == expected[i : i + 3].tolist()
    with server.client() as client:
        shown = settled(client, "bc-prod", server.workers)
    assert len({worker["pid"] for worker in shown["workers"]}) == server.workers
    assert {(w["revision"], w["error"]) for w in shown["workers"]} == {(shown["revision"], None)}


def settled(client: Client, deployment: str, workers: int) -> dict[str, Any]:
    """The deployment as shown once `workers` workers report its revision (or at the
    deadline, as it is then)."""
    deadline = time.monotonic() + REPORT_WAIT_S
    while True:
        shown: dict[str, Any] = client.show_deployment(deployment)
        revisions = [w["revision"] for w in shown["workers"]]
        if revisions == [shown["revision"]] * workers or time.monotonic() > deadline:
            return shown
        time.sleep(0.2)


def test_two_workers_serve_a_new_deployment_at_once(tmp_path: Path) -> None:
    server = LiveServer(tmp_path / "home", workers=2).start()
    try:
        exercise(server, tmp_path)
    finally:
        server.stop()


@pytest.mark.postgres
def test_serving_on_postgresql(tmp_path: Path, pg_url: str) -> None:
    server = LiveServer(tmp_path / "home", workers=2, database_url=pg_url).start()
    try:
        exercise(server, tmp_path)
    finally:
        server.stop()
