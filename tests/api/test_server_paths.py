"""A caller cannot make the server read its own files: training data and holdout paths must
lie under TURNOUT_DATA_ROOTS, SQL sources must be configured databases, and a pipeline is
an import path or an uploaded file, never a server path. Refusals say the same whether or
not the file exists."""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
import skops.io as sio

from tests.fixtures.models import sklearn_pipeline
from tests.fixtures.server import LiveServer

pytestmark = pytest.mark.server

SECRET = "private_key,owner\nabc123,root\n"


@pytest.fixture(scope="module")
def private(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("private")
    (folder / "secret.csv").write_text(SECRET)
    (folder / "secret.py").write_text(f"KEY = {SECRET!r}\n")
    return folder


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    home = tmp_path_factory.mktemp("paths") / "home"
    allowed = tmp_path_factory.mktemp("allowed")
    live = LiveServer(home, env={"TURNOUT_DATA_ROOTS": str(allowed)}).start()
    yield live
    live.stop()


def call(server: LiveServer, method: str, path: str, body: object) -> httpx.Response:
    return httpx.request(
        method,
        server.url + path,
        headers={"authorization": f"Bearer {server.token}"},
        json=body,
        timeout=30,
    )


def test_retrain_data_outside_the_roots_is_refused(server: LiveServer, private: Path) -> None:
    answers = []
    for path in (private / "secret.csv", private / "missing.csv"):
        policy = {"data": {"path": str(path)}, "target": "owner"}
        answers.append(
            call(server, "PUT", "/api/v1/deployments/d/retrain-policy", {"policy": policy})
        )
        answers.append(
            call(server, "POST", "/api/v1/deployments/d/retrain", {"data": {"path": str(path)}})
        )
    sql = {"sql": "select 1", "url": "postgresql://u:pw@elsewhere.example/db"}
    answers.append(
        call(server, "PUT", "/api/v1/deployments/d/retrain-policy", {"policy": {"data": sql}})
    )
    for answer in answers:
        assert answer.status_code == 400, answer.text
        assert "abc123" not in answer.text
        assert "private_key" not in answer.text
        assert "pw" not in answer.json()["error"]
    assert len({a.text for a in answers[:4]}) == 1


def test_a_holdout_outside_the_roots_is_no_existence_oracle(
    server: LiveServer, private: Path, tmp_path: Path
) -> None:
    model = tmp_path / "model.skops"
    sio.dump(sklearn_pipeline(), model)
    with server.client() as admin:
        admin.register("h", model, flavor="sklearn")
        admin.register("h", model, flavor="sklearn")
        admin.create_deployment("d", model="h", version=1)
    answers = [
        call(server, "POST", "/api/v1/deployments/d/rollout",
             {"version": 2, "plan": {"validate": {"holdout": str(path)}}})
        for path in (private / "secret.csv", private / "missing.csv")
    ]  # fmt: skip
    answers += [
        call(server, "POST", "/api/v1/apply",
             {"deployment": "d", "model": "h", "version": 2,
              "rollout": {"validate": {"holdout": str(path)}}})
        for path in (private / "secret.csv", private / "missing.csv")
    ]  # fmt: skip
    assert [a.status_code for a in answers] == [400] * 4
    assert answers[0].text == answers[1].text
    assert answers[2].text == answers[3].text
    assert "TURNOUT_DATA_ROOTS" in answers[0].json()["error"]


def test_an_import_pipeline_cannot_name_a_server_file(
    server: LiveServer, private: Path, tmp_path: Path
) -> None:
    model = tmp_path / "model.skops"
    sio.dump(sklearn_pipeline(), model)
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        tar.add(model, arcname=model.name)
    answers = []
    for ref in (str(private / "secret.py"), str(private / "missing.py")):
        metadata = {"kind": "file", "pipeline": {"kind": "import", "ref": ref}}
        answers.append(
            httpx.post(
                f"{server.url}/api/v1/models/m/versions",
                headers={"authorization": f"Bearer {server.token}"},
                data={"flavor": "sklearn", "metadata": orjson.dumps(metadata).decode()},
                files={"artifact": ("a.tar", archive.getvalue(), "application/x-tar")},
                timeout=60,
            )
        )
    assert [a.status_code for a in answers] == [400, 400]
    assert answers[0].text == answers[1].text
    digest = hashlib.sha256((private / "secret.py").read_bytes()).hexdigest()
    assert not list((server.home / "artifacts").rglob(digest))
