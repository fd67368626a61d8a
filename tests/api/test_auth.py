"""Every management route needs a token, and each role may do only what it is allowed."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import skops.io as sio

from tests.fixtures.models import sklearn_pipeline
from tests.fixtures.server import LiveServer
from turnout.client import ApiError, Client

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path_factory.mktemp("auth") / "home").start()
    yield live
    live.stop()


def test_admin_token_file_is_private(server: LiveServer) -> None:
    mode = stat.S_IMODE((server.home / "admin.token").stat().st_mode)
    assert mode == 0o600
    assert server.token.startswith("tnt_")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/models"),
        ("GET", "/api/v1/deployments"),
        ("POST", "/api/v1/deployments"),
        ("GET", "/api/v1/tokens"),
        ("GET", "/api/v1/whoami"),
    ],
)
def test_routes_need_a_token(server: LiveServer, method: str, path: str) -> None:
    response = httpx.request(method, server.url + path)
    assert response.status_code == 401
    assert "token" in response.json()["error"]
    bad = httpx.request(method, server.url + path, headers={"authorization": "Bearer nope"})
    assert bad.status_code == 401
    assert bad.json() == {"error": "invalid or revoked token"}


def test_roles_are_enforced(server: LiveServer, tmp_path: Path) -> None:
    with server.client() as admin:
        viewer_token = admin.create_token("reader", "viewer")["token"]
        deployer_token = admin.create_token("ci", "deployer")["token"]
    model = tmp_path / "model.skops"  # a deployer may register models without code
    sio.dump(sklearn_pipeline(), model)
    with Client(server.url, viewer_token) as viewer:
        assert viewer.whoami() == {"name": "reader", "role": "viewer"}
        assert viewer.list_models() == []
        with pytest.raises(ApiError, match="needs deployer") as denied:
            viewer.register("m", model, flavor="sklearn")
        assert denied.value.status == 403
        with pytest.raises(ApiError, match="needs admin"):
            viewer.list_tokens()
    with Client(server.url, deployer_token) as deployer:
        record = deployer.register("m", model, flavor="sklearn")
        assert record["created_by"] == "ci"
        deployer.create_deployment("m-prod", model="m")
        with pytest.raises(ApiError, match="needs admin"):
            deployer.create_token("x", "admin")
    with server.client() as admin:
        assert {t["name"] for t in admin.list_tokens()} >= {"admin", "reader", "ci"}


def test_revoked_token_is_refused(server: LiveServer) -> None:
    with server.client() as admin:
        created = admin.create_token("temp", "viewer")
        httpx.delete(
            f"{server.url}/api/v1/tokens/{created['id']}",
            headers={"authorization": f"Bearer {server.token}"},
        ).raise_for_status()
    with Client(server.url, created["token"]) as revoked, pytest.raises(ApiError) as err:
        revoked.whoami()
    assert err.value.status == 401


def test_openapi_is_published(server: LiveServer) -> None:
    spec = httpx.get(f"{server.url}/api/v1/openapi.json").json()
    assert "/api/v1/models/{name}/versions" in spec["paths"]
    assert "/api/v1/deployments" in spec["paths"]


def test_unknown_role_is_a_clear_422(server: LiveServer) -> None:
    response = httpx.post(
        f"{server.url}/api/v1/tokens",
        json={"name": "x", "role": "superuser"},
        headers={"authorization": f"Bearer {server.token}"},
    )
    assert response.status_code == 422
    assert "role" in response.json()["error"]


def test_prediction_api_is_open_and_management_is_not(server: LiveServer) -> None:
    assert httpx.get(f"{server.url}/v2/health/live").status_code == 200
    assert httpx.get(f"{server.url}/api/v1/models").status_code == 401
