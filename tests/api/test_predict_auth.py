"""With TURNOUT_PREDICT_AUTH=required: prediction routes need a token, scoped tokens call
only their deployments, versions outside the revision need a deployer, and direct calls
are answered as role `direct`. Also: tokens with scopes and expiry, and the audit log."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.fixtures.cli import turnout
from tests.fixtures.models import save_joblib, sklearn_pipeline
from tests.fixtures.server import LiveServer
from turnout.client import ApiError, Client

pytestmark = pytest.mark.server

ROW = [[1.0] * 30]
BODY: dict[str, Any] = {
    "inputs": [{"name": "input-0", "shape": [1, 30], "datatype": "FP64", "data": ROW}]
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    work = tmp_path_factory.mktemp("predict-auth")
    live = LiveServer(work / "home", env={"TURNOUT_PREDICT_AUTH": "required"}).start()
    with live.client() as admin:
        admin.register("bc", save_joblib(sklearn_pipeline(), work), flavor="sklearn")
        admin.register("bc", save_joblib(sklearn_pipeline(c=0.001), work), flavor="sklearn")
        admin.create_deployment("fraud", model="bc", version=1)
        admin.create_deployment("churn", model="bc", version=1)
    yield live
    live.stop()


def bearer(token: str | None) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"} if token else {}


def infer(server: LiveServer, path: str, token: str | None) -> httpx.Response:
    return httpx.post(f"{server.url}{path}", json=BODY, headers=bearer(token))


def test_health_and_server_metadata_stay_open(server: LiveServer) -> None:
    assert httpx.get(f"{server.url}/v2/health/ready").status_code == 200
    assert httpx.get(f"{server.url}/v2/health/live").status_code == 200
    assert httpx.get(f"{server.url}/v2").json()["name"] == "turnout"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v2/models/fraud/infer"),
        ("POST", "/v2/models/fraud/versions/1/infer"),
        ("GET", "/v2/models/fraud"),
        ("GET", "/v2/models/fraud/ready"),
        ("POST", "/v1/deployments/fraud/predict"),
        ("POST", "/v2/models/made-up/infer"),
    ],
)
def test_every_prediction_route_needs_a_token(server: LiveServer, method: str, path: str) -> None:
    anonymous = httpx.request(method, server.url + path, json=BODY)
    assert anonymous.status_code == 401
    assert "missing token" in anonymous.json()["error"]
    forged = httpx.request(method, server.url + path, json=BODY, headers=bearer("tnt_forged"))
    assert forged.status_code == 401
    assert forged.json() == {"error": "invalid or revoked token"}


def test_a_predictor_token_predicts_and_manages_nothing(server: LiveServer) -> None:
    with server.client() as admin:
        token = admin.create_token("app", "predictor")["token"]
    assert infer(server, "/v2/models/fraud/infer", token).status_code == 200
    native = httpx.post(
        f"{server.url}/v1/deployments/fraud/predict", json={"instances": ROW}, headers=bearer(token)
    )
    assert native.status_code == 200, native.text
    with Client(server.url, token) as app, pytest.raises(ApiError, match="needs viewer"):
        app.list_models()


def test_a_scoped_token_calls_only_its_deployments(server: LiveServer) -> None:
    with server.client() as admin:
        token = admin.create_token("fraud-app", "predictor", deployments=["fraud"])["token"]
        listed = {t["name"]: t for t in admin.list_tokens()}
    assert listed["fraud-app"]["deployments"] == ["fraud"]
    assert infer(server, "/v2/models/fraud/infer", token).status_code == 200
    refused = infer(server, "/v2/models/churn/infer", token)
    assert refused.status_code == 403
    assert refused.json() == {"error": "token 'fraud-app' may not call deployment 'churn'"}


def test_versions_outside_the_revision_need_a_deployer(server: LiveServer) -> None:
    with server.client() as admin:
        predictor = admin.create_token("p2", "predictor")["token"]
        deployer = admin.create_token("d2", "deployer")["token"]
    routed = infer(server, "/v2/models/fraud/versions/1/infer", predictor)
    assert routed.status_code == 200, routed.text
    assert routed.headers["x-turnout-role"] == "direct"
    assert routed.json()["parameters"]["role"] == "direct"
    for path in ("/v2/models/fraud/versions/2/infer", "/v2/models/fraud/versions/2"):
        response = httpx.request(
            "POST" if path.endswith("infer") else "GET", server.url + path, json=BODY,
            headers=bearer(predictor),
        )  # fmt: skip
        assert response.status_code == 403
        assert "only deployer tokens" in response.json()["error"]
    direct = infer(server, "/v2/models/fraud/versions/2/infer", deployer)
    assert direct.status_code == 200, direct.text
    assert direct.headers["x-turnout-role"] == "direct"
    assert direct.headers["x-turnout-model-version"] == "2"
    missing = infer(server, "/v2/models/fraud/versions/99/infer", deployer)
    assert missing.status_code == 404


def test_a_revoked_token_stops_predicting_within_seconds(server: LiveServer) -> None:
    with server.client() as admin:
        created = admin.create_token("leaving", "predictor")
        assert infer(server, "/v2/models/fraud/infer", created["token"]).status_code == 200
        admin.revoke_token(created["id"])
    deadline = time.monotonic() + 30
    while infer(server, "/v2/models/fraud/infer", created["token"]).status_code != 401:
        assert time.monotonic() < deadline, "revoked token still accepted"
        time.sleep(0.5)


def _accepted(client: Client) -> bool:
    try:
        client.whoami()
    except ApiError:
        return False
    return True


def test_tokens_expire(server: LiveServer) -> None:
    with server.client() as admin:
        created = admin.create_token("brief", "viewer", expires_in="1s")
        later = admin.create_token("monthly", "viewer", expires_in="30d")
        with pytest.raises(ApiError, match="expires_in must be"):
            admin.create_token("never", "viewer", expires_in="soon")
    expires = datetime.fromisoformat(later["expires_at"])
    assert abs(expires - (datetime.now(UTC) + timedelta(days=30))) < timedelta(minutes=5)
    deadline = time.monotonic() + 30
    with Client(server.url, created["token"]) as brief:
        while _accepted(brief):  # a one-second token: poll until its second has passed
            assert time.monotonic() < deadline, "the token never expired"
            time.sleep(0.2)
        with pytest.raises(ApiError, match="expired"):
            brief.whoami()


def test_token_creation_is_audited_as_its_caller(server: LiveServer) -> None:
    with server.client() as admin:
        second = admin.create_token("ops-lead", "admin")["token"]
    with Client(server.url, second) as lead:
        lead.create_token("made-by-lead", "viewer", permissions=["register-code"])
        entries = lead.audit(action="token.create", target="made-by-lead")
    assert [e["actor"] for e in entries] == ["ops-lead"]
    assert entries[0]["detail"]["permissions"] == ["register-code"]


def test_audit_filters_and_pages(server: LiveServer) -> None:
    with server.client() as admin:
        for i in range(5):
            admin.create_token(f"pager-{i}", "viewer")
        newest_first = admin.audit(action="token.create", limit=3)
        assert len(newest_first) == 3
        assert newest_first[0]["id"] > newest_first[1]["id"] > newest_first[2]["id"]
        paged = admin.audit(action="token.", limit=1000)
        assert len({e["id"] for e in paged}) == len(paged) >= 5
        assert admin.audit(actor="nobody-at-all") == []
        assert admin.audit(since="1h", target="pager-4")[0]["target"] == "pager-4"
        future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        assert admin.audit(since=future) == []
        with pytest.raises(ApiError, match="since must be"):
            admin.audit(since="yesterday-ish")
        page = httpx.get(
            f"{server.url}/api/v1/audit", params={"limit": 2, "action": "token.create"},
            headers=bearer(server.token),
        ).json()  # fmt: skip
        after = httpx.get(
            f"{server.url}/api/v1/audit",
            params={"limit": 2, "action": "token.create", "before_id": page["next_before_id"]},
            headers=bearer(server.token),
        ).json()
        assert after["entries"][0]["id"] < page["entries"][-1]["id"]
        viewer = admin.create_token("audit-reader", "viewer")["token"]
    denied = httpx.get(f"{server.url}/api/v1/audit", headers=bearer(viewer))
    assert denied.status_code == 403


def test_tokens_cli_creates_lists_and_revokes(server: LiveServer) -> None:
    created = turnout(
        server, "tokens", "create", "cli-app", "--role", "predictor", "--deployment", "fraud",
        "--expires-in", "30d", "--json",
    )  # fmt: skip
    data = json.loads(created.stdout)
    assert data["deployments"] == ["fraud"]
    assert data["expires_at"]
    table = turnout(server, "tokens", "list").stdout
    assert "cli-app" in table
    assert "fraud" in table
    assert "revoked" in turnout(server, "tokens", "revoke", str(data["id"])).stdout
    listed = json.loads(turnout(server, "tokens", "list", "--json").stdout)
    assert next(t for t in listed if t["id"] == data["id"])["revoked_at"]
    audited = json.loads(turnout(server, "audit", "--action", "token.revoke", "--json").stdout)
    assert audited[0]["target"] == str(data["id"])
    assert "token.revoke" in turnout(server, "audit", "--since", "1h").stdout
