"""Every management route, from the server's own OpenAPI document, against no token and a
token of each role: who is let in, who is refused, and nobody ever gets a 5xx."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fixtures.server import LiveServer

pytestmark = pytest.mark.server

ROLES = ("predictor", "viewer", "deployer", "admin")
OPEN = {"/api/v1/health"}
ADMIN_ONLY = re.compile(r"^/api/v1/(tokens|audit)(/|$)")
"""Routes only an admin may call, whatever the method."""
ADMIN_DELETES = re.compile(r"^/api/v1/(models/[^/]+(/versions/[^/]+)?|deployments/[^/]+)$")
"""Deleting models, versions and deployments is an admin's (clearing a policy is not)."""
PARAMETERS = {"version": "1", "token_id": "999999", "job_id": "999999", "revision": "1"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path_factory.mktemp("matrix") / "home").start()
    yield live
    live.stop()


@pytest.fixture(scope="module")
def tokens(server: LiveServer) -> dict[str, str | None]:
    found: dict[str, str | None] = {"none": None, "admin": server.token}
    with server.client() as client:
        for role in ROLES[:-1]:
            found[role] = client.create_token(f"matrix-{role}", role)["token"]
    return found


def routes(server: LiveServer) -> list[tuple[str, str]]:
    document = httpx.get(f"{server.url}/api/v1/openapi.json").json()
    found = []
    for path, item in document["paths"].items():
        if not path.startswith("/api/v1/") or path in OPEN:
            continue
        for method in item:
            if method in ("get", "post", "put", "patch", "delete"):
                found.append((method.upper(), path))
    return sorted(found)


def concrete(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: PARAMETERS.get(m.group(1), "nosuch"), path)


def expected(role: str, method: str, path: str) -> set[int] | None:
    """The statuses a role must get, or None when any non-auth answer will do."""
    if role == "none":
        return {401}
    if role == "predictor":
        return {403}
    admin_only = ADMIN_ONLY.match(path) is not None or (
        method == "DELETE" and ADMIN_DELETES.match(path) is not None
    )
    if role == "viewer" and (method != "GET" or admin_only):
        return {403}
    if role == "deployer" and admin_only:
        return {403}
    return None


def test_the_route_list_covers_the_api(server: LiveServer) -> None:
    found = routes(server)
    assert len(found) > 30
    assert ("POST", "/api/v1/deployments") in found
    assert ("GET", "/api/v1/tokens") in found


@pytest.mark.parametrize("role", ["none", *ROLES])
def test_each_route_lets_in_only_the_roles_it_should(
    server: LiveServer, tokens: dict[str, str | None], role: str, tmp_path: Path
) -> None:
    token = tokens[role]
    headers = {"authorization": f"Bearer {token}"} if token else {}
    wrong = []
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as http:
        for method, path in routes(server):
            body = {} if method in ("POST", "PUT", "PATCH") else None
            reply = http.request(method, concrete(path), json=body)
            want = expected(role, method, path)
            if reply.status_code >= 500:
                wrong.append(f"{method} {path}: {reply.status_code} {reply.text[:200]}")
            elif want is not None and reply.status_code not in want:
                wrong.append(f"{method} {path}: {reply.status_code}, wanted {sorted(want)}")
            elif want is None and reply.status_code in (401, 403):
                wrong.append(f"{method} {path}: {reply.status_code} {reply.text[:200]}")
    assert wrong == [], "\n".join(wrong)
