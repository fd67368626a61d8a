"""Several worker processes, and PostgreSQL as the metadata DB, serve the same answers."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.fixtures.models import breast_cancer, save_joblib, sklearn_pipeline
from tests.fixtures.server import LiveServer

pytestmark = pytest.mark.server


def exercise(server: LiveServer, tmp_path: Path) -> None:
    """Register, deploy, then predict at once from many connections: every answer is right."""
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
    np.testing.assert_array_equal(expected[:3], pipeline.predict(features.iloc[:3]))


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
