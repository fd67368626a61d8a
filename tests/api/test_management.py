"""Registering and deploying over the management API, including every kind of bad input."""

from __future__ import annotations

import io
import os
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fixtures.models import save_joblib, sklearn_pipeline, training_csv
from tests.fixtures.server import LiveServer
from turnout.client import ApiError

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path_factory.mktemp("mgmt") / "home").start()
    yield live
    live.stop()


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_joblib(sklearn_pipeline(), tmp_path_factory.mktemp("model"))


def auth(server: LiveServer) -> dict[str, str]:
    return {"authorization": f"Bearer {server.token}"}


def tar_with(name: str, data: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def post_version(server: LiveServer, name: str, archive: bytes, **form: str) -> httpx.Response:
    return httpx.post(
        f"{server.url}/api/v1/models/{name}/versions",
        headers=auth(server),
        data={"flavor": "sklearn", **form},
        files={"artifact": ("a.tar", archive, "application/x-tar")},
    )


def versions_of(server: LiveServer, name: str) -> int:
    response = httpx.get(f"{server.url}/api/v1/models/{name}", headers=auth(server))
    return int(response.json()["versions"]) if response.status_code == 200 else 0


def test_register_show_and_list(server: LiveServer, model_file: Path, tmp_path: Path) -> None:
    with server.client() as client:
        record = client.register(
            "reg", model_file, flavor="sklearn", metrics={"auc": 0.99}, params={"C": "1"},
            tags={"team": "risk"}, description="reference", training_data=training_csv(tmp_path),
            target="target",
        )  # fmt: skip
        assert record["ref"] == "reg:1"
        assert record["files"][0]["path"] == "model.joblib"
        assert len(record["files"][0]["sha256"]) == 64
        assert record["training"]["rows"] == 569
        assert "mean radius" in record["training"]["features"]
        again = client.register("reg", model_file, flavor="sklearn", parent_version=1)
        assert again["version"] == 2
        assert again["files"][0]["sha256"] == record["files"][0]["sha256"]
        shown = client.show_model("reg")
        assert [v["version"] for v in shown["version_list"]] == [1, 2]
        assert client.show_version("reg", 1)["metrics"] == {"auc": 0.99}
        assert [v["version"] for v in client.lineage("reg", 2)] == [2, 1]


@pytest.mark.parametrize(
    ("name", "archive", "form", "status", "message"),
    [
        ("bad-flavor", None, {"flavor": "tensorflow"}, 400, "unknown flavor"),
        ("escape", tar_with("../evil.joblib", b"x"), {}, 400, "must be relative"),
        ("absolute", tar_with("/etc/evil.joblib", b"x"), {}, 400, "must be relative"),
        ("garbage", tar_with("m.joblib", b"not a pickle"), {}, 422, "not a readable"),
        ("not-tar", b"plain bytes", {}, 400, "not a valid tar"),
        ("bad-meta", None, {"metadata": "{not json"}, 400, "not valid JSON"),
        ("bad-metric", None, {"metadata": '{"metrics": {"auc": "high"}}'}, 400, "must be a number"),
        ("bad name!", None, {}, 400, "invalid model name"),
    ],
)
def test_bad_registrations_are_refused_and_write_nothing(
    server: LiveServer,
    model_file: Path,
    name: str,
    archive: bytes | None,
    form: dict[str, str],
    status: int,
    message: str,
) -> None:
    payload = archive if archive is not None else tar_with("model.joblib", model_file.read_bytes())
    response = post_version(server, name, payload, **form)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]
    assert versions_of(server, name) == 0


def test_upload_scratch_folders_are_removed(server: LiveServer, model_file: Path) -> None:
    """Every upload's scratch folder goes away, whether the registration succeeded or not
    (a successful one's right after its answer)."""
    good = tar_with("model.joblib", model_file.read_bytes())
    assert post_version(server, "scratch", good, metadata='{"kind": "file"}').status_code == 201
    assert post_version(server, "scratch", b"plain bytes").status_code == 400
    scratch = server.home / "tmp"
    deadline = time.monotonic() + 10
    while list(scratch.glob("upload-*")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(scratch.glob("upload-*")) == []


def test_pickle_policy(tmp_path: Path, model_file: Path) -> None:
    live = LiveServer(tmp_path / "home", env={"TURNOUT_ALLOW_PICKLE": "false"}).start()
    try:
        with live.client() as client, pytest.raises(ApiError, match="pickle") as refused:
            client.register("m", model_file, flavor="sklearn")
        assert refused.value.status == 403
    finally:
        live.stop()


def test_deployment_errors(server: LiveServer, model_file: Path) -> None:
    with server.client() as client:
        client.register("dep", model_file, flavor="sklearn")
        client.create_deployment("dep-prod", model="dep", version=1)
        cases = [
            ({"name": "dep-prod", "model": "dep", "version": 1}, 409, "already exists"),
            ({"name": "x1", "model": "nope", "version": 1}, 404, "model 'nope' not found"),
            ({"name": "x2", "model": "dep", "version": 9}, 404, "version dep:9 not found"),
            ({"name": "x3", "model": "dep", "version": 1, "failover": 1}, 400, "must differ"),
            ({"name": "bad/name", "model": "dep", "version": 1}, 400, "invalid deployment name"),
        ]
        for kwargs, status, message in cases:
            with pytest.raises(ApiError, match=message) as err:
                client.create_deployment(**kwargs)  # type: ignore[arg-type]
            assert err.value.status == status
        assert [d["name"] for d in client.list_deployments()] == ["dep-prod"]


def test_corrupted_artifact_is_never_deployed(server: LiveServer, model_file: Path) -> None:
    with server.client() as client:
        record = client.register("corrupt", model_file, flavor="sklearn")
        sha = record["files"][0]["sha256"]
        blob = server.home / "artifacts" / "sha256" / sha[:2] / sha
        os.chmod(blob, 0o644)
        original = blob.read_bytes()
        blob.write_bytes(original[:-10] + b"0123456789")
        try:
            with pytest.raises(ApiError, match="corrupted") as err:
                client.create_deployment("corrupt-prod", model="corrupt", version=1)
            assert err.value.status == 409
        finally:
            blob.write_bytes(original)
        assert "corrupt-prod" not in [d["name"] for d in client.list_deployments()]


def test_deployment_show_and_history(server: LiveServer, model_file: Path) -> None:
    with server.client() as client:
        client.register("hist", model_file, flavor="sklearn")
        created = client.create_deployment(
            "hist-prod", model="hist", timeout_ms=150, fallback={"label": 0}
        )
        assert created["champion"] == 1
        assert created["timeout_ms"] == 150
        assert created["fallback"] == {"label": 0}
        shown = client.show_deployment("hist-prod")
        assert shown["revision"] == 1
        history = client.history("hist-prod")
        assert [r["revision"] for r in history] == [1]
        assert history[0]["created_by"] == "admin"


def test_malformed_management_json_is_422(server: LiveServer) -> None:
    response = httpx.post(
        f"{server.url}/api/v1/deployments",
        content=b"{oops",
        headers={**auth(server), "content-type": "application/json"},
    )
    assert response.status_code == 422
    assert "error" in response.json()


def test_unknown_route_is_json_404(server: LiveServer) -> None:
    response = httpx.get(f"{server.url}/api/v1/nothing", headers=auth(server))
    assert response.status_code == 404
    assert response.json() == {"error": "Not Found"}
