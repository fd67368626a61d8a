"""Registering a version that brings its own code needs the register-code permission, which
`deployer` does not imply; refused and failed attempts are audited with the caller."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import skops.io as sio

from tests.fixtures.models import save_joblib, save_onnx, sklearn_pipeline
from tests.fixtures.server import LiveServer
from turnout.client import ApiError, Client
from turnout.store import metadata as md
from turnout.store.db import Database
from turnout.types import JSON

pytestmark = pytest.mark.server

CANARY_MODEL = """
import os


class Model:
    def __init__(self):
        os.mkdir({canary!r})

    def predict(self, X):
        return [0] * len(X)
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path_factory.mktemp("register-code") / "home").start()
    yield live
    live.stop()


@pytest.fixture(scope="module")
def deployer_token(server: LiveServer) -> str:
    with server.client() as admin:
        return str(admin.create_token("builder", "deployer")["token"])


def audit_log(server: LiveServer) -> list[dict[str, JSON]]:
    db = Database.from_url(f"sqlite:///{server.home / 'turnout.db'}")
    try:
        with db.read() as conn:
            return md.list_audit(conn)
    finally:
        db.dispose()


def test_deployer_may_not_register_python_code(
    server: LiveServer, deployer_token: str, tmp_path: Path
) -> None:
    canary = tmp_path / "canary"
    model = tmp_path / "model.py"
    model.write_text(CANARY_MODEL.format(canary=str(canary)))
    with (
        Client(server.url, deployer_token) as deployer,
        pytest.raises(ApiError, match="register-code") as refused,
    ):
        deployer.register("code", model, flavor="python")
    assert refused.value.status == 403
    assert not canary.exists()
    failed = [e for e in audit_log(server) if e["action"] == "version.register.failed"]
    assert any(
        e["actor"] == "builder" and e["target"] == "code" and "register-code" in str(e["detail"])
        for e in failed
    )


def test_deployer_may_not_register_a_pickle(
    server: LiveServer, deployer_token: str, tmp_path: Path
) -> None:
    model = save_joblib(sklearn_pipeline(), tmp_path)
    skops = tmp_path / "model.skops"
    sio.dump(sklearn_pipeline(), skops)
    with Client(server.url, deployer_token) as deployer:
        with pytest.raises(ApiError, match="register-code") as refused:
            deployer.register("pickled", model, flavor="sklearn")
        assert refused.value.status == 403
        with pytest.raises(ApiError, match="pipeline") as pipeline:
            deployer.register("pickled", skops, flavor="sklearn", pipeline="sklearn.base:clone")
        assert pipeline.value.status == 403


def test_deployer_may_register_skops_and_onnx(
    server: LiveServer, deployer_token: str, tmp_path: Path
) -> None:
    skops = tmp_path / "model.skops"
    sio.dump(sklearn_pipeline(), skops)
    onnx, _ = save_onnx(tmp_path)
    with Client(server.url, deployer_token) as deployer:
        assert deployer.register("safe", skops, flavor="sklearn")["created_by"] == "builder"
        assert deployer.register("safe-onnx", onnx, flavor="onnx")["version"] == 1


def test_admin_may_register_code(server: LiveServer, tmp_path: Path) -> None:
    model = save_joblib(sklearn_pipeline(), tmp_path)
    with server.client() as admin:
        assert admin.register("admin-pickled", model, flavor="sklearn")["version"] == 1


def test_failed_registration_is_audited_without_model_output(
    server: LiveServer, tmp_path: Path
) -> None:
    secret = "tnt_not-to-be-logged"
    model = tmp_path / "model.py"
    model.write_text(
        f"class Model:\n    def __init__(self):\n        raise RuntimeError({secret!r})\n"
    )
    with server.client() as admin, pytest.raises(ApiError):
        admin.register("broken", model, flavor="python")
    failed = [
        e
        for e in audit_log(server)
        if e["action"] == "version.register.failed" and e["target"] == "broken"
    ]
    assert [e["actor"] for e in failed] == ["admin"]
    assert secret not in str(failed)
