"""Requests that used to break the API into a 500 with its internals: integers past int64,
values nested too deeply, and bugs, which answer a reference instead of the exception."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

with warnings.catch_warnings():  # starlette's notice about httpx, not ours to fix
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from turnout.app import TurnoutApp, create_app
from turnout.settings import Settings

HUGE = 10**30


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("problems")


@pytest.fixture(scope="module")
def app(home: Path) -> Iterator[TurnoutApp]:
    umask = os.umask(0o077)  # create_app sets the process's umask to 077; the other
    built = create_app(Settings(home=home, runner="thread", log_predictions=False))
    os.umask(umask)  # tests in this session keep the one they had
    yield built
    built.db.dispose()


@pytest.fixture(scope="module")
def client(app: TurnoutApp, home: Path) -> Iterator[TestClient]:
    token = (home / "admin.token").read_text().strip()
    with TestClient(
        app.api, raise_server_exceptions=False, headers={"authorization": f"Bearer {token}"}
    ) as client:
        yield client


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("post", "/api/v1/deployments", {"name": "d", "model": "m", "version": HUGE},
         "body.version"),
        ("get", f"/api/v1/models/m/versions/{HUGE}", None, "path.version"),
        ("get", f"/api/v1/jobs/{HUGE}", None, "path.job_id"),
        ("post", "/api/v1/deployments",
         {"name": "d", "model": "m", "version": 1, "timeout_ms": HUGE}, None),
    ],
)  # fmt: skip
def test_integers_past_int64_are_400_naming_the_field(
    client: TestClient, method: str, path: str, body: object, field: str | None
) -> None:
    response = client.request(method, path, json=body)
    assert response.status_code in (400, 404, 422), response.text
    if field is not None:
        assert response.status_code == 400
        assert response.json() == {"error": f"{field}: integers must be between -2**63 and 2**63-1"}


@pytest.mark.parametrize(
    ("path", "content_type", "body"),
    [
        ("/api/v1/apply", "application/yaml",
         "deployment: d\nmodel: m\nfallback: " + "[" * 2000 + "]" * 2000 + "\n"),
        ("/api/v1/deployments", "application/json",
         '{"name": "d", "model": "m", "version": 1, "fallback": ' + "[" * 2000 + "]" * 2000 + "}"),
    ],
)  # fmt: skip
def test_values_nested_2000_deep_are_400(
    client: TestClient, path: str, content_type: str, body: str
) -> None:
    response = client.post(path, content=body, headers={"content-type": content_type})
    assert response.status_code == 400, response.text


def test_a_bug_answers_a_reference_and_logs_the_details(
    app: TurnoutApp, client: TestClient, home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    registry = app.api.state.services.registry

    def broken() -> list[object]:
        raise RuntimeError(f"cannot open {home}/turnout.db: password=hunter2")

    registry.list_models = broken  # an unexpected failure deep in the service layer
    try:
        with caplog.at_level(logging.ERROR, logger="turnout.api"):
            response = client.get("/api/v1/models")
    finally:
        del registry.list_models
    assert response.status_code == 500
    body = response.json()
    assert body["error"] == "internal error"
    assert str(home) not in response.text
    assert "hunter2" not in response.text
    assert f"internal error {body['reference']}" in caplog.text
    assert "hunter2" in caplog.text  # the operator's log keeps what happened


def test_a_billion_laughs_spec_is_a_400(client: TestClient) -> None:
    laughs = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    laughs += [f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 10)}]" for n in range(1, 10)]
    spec = "deployment: d\nmodel: m\nfallback:\n  " + "\n  ".join(laughs) + "\n"
    response = client.post(
        "/api/v1/apply", content=spec, headers={"content-type": "application/yaml"}
    )
    assert response.status_code == 400
    assert "anchors and aliases (&name, *name) are not accepted" in response.json()["error"]
