"""Archive and delete over the API, SDK and CLI: roles, 409 while in use, audited."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.fixtures.cli import turnout
from tests.fixtures.models import save_joblib, sklearn_pipeline
from tests.fixtures.server import LiveServer
from turnout.client import ApiError, Client

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    work = tmp_path_factory.mktemp("retire")
    live = LiveServer(work / "home").start()
    with live.client() as admin:
        for c in (1.0, 0.5, 0.1):
            admin.register("bc", save_joblib(sklearn_pipeline(c=c), work), flavor="sklearn")
        admin.create_deployment("bc-prod", model="bc", version=1)
    yield live
    live.stop()


def test_deployers_archive_and_only_admins_delete(server: LiveServer) -> None:
    with server.client() as admin:
        deployer_token = admin.create_token("ci", "deployer")["token"]
        viewer_token = admin.create_token("reader", "viewer")["token"]
    with Client(server.url, viewer_token) as viewer, pytest.raises(ApiError, match="needs"):
        viewer.archive_version("bc", 3)
    with Client(server.url, deployer_token) as deployer:
        assert deployer.archive_version("bc", 3)["archived_at"]
        for call in (
            lambda: deployer.delete_version("bc", 3),
            lambda: deployer.delete_model("bc"),
            lambda: deployer.delete_deployment("bc-prod"),
        ):
            with pytest.raises(ApiError, match="needs admin") as denied:
                call()
            assert denied.value.status == 403
        with pytest.raises(ApiError, match="archived") as refused:
            deployer.route("bc-prod", shadows={3: 100.0})
        assert refused.value.status == 409
    with server.client() as admin:
        assert admin.show_version("bc", 3)["archived_at"]
        entries = admin.audit(action="version.archive")
    assert [(e["actor"], e["target"]) for e in entries] == [("ci", "bc:3")]


def test_in_use_is_a_409_and_deleting_a_deployment_stops_serving_it(server: LiveServer) -> None:
    with server.client() as admin:
        response = httpx.delete(
            f"{server.url}/api/v1/models/bc/versions/1",
            headers={"authorization": f"Bearer {server.token}"},
        )
        assert response.status_code == 409
        assert "in use by deployment 'bc-prod'" in response.json()["error"]
        with pytest.raises(ApiError, match="has deployments"):
            admin.delete_model("bc")
        admin.create_deployment("bc-temp", model="bc", version=2)
        body = {"instances": [[1.0] * 30]}
        assert httpx.post(f"{server.url}/v1/deployments/bc-temp/predict", json=body).is_success
    assert (
        "deleted deployment bc-temp" in turnout(server, "deployments", "delete", "bc-temp").stdout
    )
    deadline = time.monotonic() + 30
    while True:  # each worker drops it at its next routing refresh
        gone = httpx.post(f"{server.url}/v1/deployments/bc-temp/predict", json=body)
        if gone.status_code == 404 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert gone.status_code == 404
    assert "deleted bc:2" in turnout(server, "models", "delete", "bc:2").stdout
    shown = json.loads(turnout(server, "models", "show", "bc", "--json").stdout)
    assert [v["version"] for v in shown["version_list"]] == [1, 3]
    assert "archived bc:1" in turnout(server, "models", "archive", "bc:1").stdout
