"""A path given to the CLI or SDK is the caller's file: uploaded to the server's data root,
then named as retrain data. Tried as a caller who sends odd names, types and sizes."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import joblib
import orjson
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tests.fixtures.models import breast_cancer
from tests.fixtures.server import LiveServer

pytestmark = pytest.mark.server

PIPELINE = """
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def fit(data, params):
    target = data.attrs["target"]
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    return model.fit(data.drop(columns=[target]), data[target])
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(
        tmp_path_factory.mktemp("data") / "home",
        env={"TURNOUT_CONTROLLER_INTERVAL_MS": "300", "TURNOUT_MAX_UPLOAD_MB": "1"},
    ).start()
    yield live
    live.stop()


def test_retrain_with_a_relative_path_trains_on_the_callers_file(
    server: LiveServer, tmp_path: Path
) -> None:
    features, target = breast_cancer()
    work = tmp_path / "my-project"
    work.mkdir()
    features.assign(label=target).to_csv(work / "train.csv", index=False)
    (work / "train.py").write_text(PIPELINE)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    joblib.dump(model.fit(features, target), work / "model.joblib")
    env = {**server.env, "TURNOUT_TOKEN": server.token}

    def turnout(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "turnout", *args], env=env, cwd=work,
                              capture_output=True, text=True, timeout=300, check=False)  # fmt: skip

    registered = turnout("models", "register", "up", "model.joblib", "--flavor", "sklearn",
                         "--training-data", "train.csv", "--target", "label",
                         "--pipeline", "train.py")  # fmt: skip
    assert registered.returncode == 0, registered.stderr
    assert turnout("deployments", "create", "up-prod", "--model", "up",
                   "--version", "1").returncode == 0  # fmt: skip
    done = turnout("retrain", "up-prod", "--data", "train.csv", "--wait", "--json")
    assert done.returncode == 0, done.stderr
    assert "uploaded 1 file(s)" in done.stderr
    job = orjson.loads(done.stdout)
    assert job["state"] == "succeeded", job
    uploaded = str(server.home / "data" / "uploads")
    assert uploaded in orjson.dumps(job["spec"]).decode()  # trained on the uploaded copy
    with server.client() as client:
        assert [v["version"] for v in client.show_model("up")["version_list"]] == [1, 2]


def upload(server: LiveServer, files: list[tuple[str, bytes]], token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    parts = [("files", (name, data, "text/csv")) for name, data in files]
    return httpx.post(f"{server.url}/api/v1/data", files=parts, headers=headers, timeout=60)


def uploads(server: LiveServer) -> list[Path]:
    folder = server.home / "data" / "uploads"
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        (".hidden.csv", "not a plain file name"),
        ("run.sh", "not CSV or Parquet"),
        ("a\x00b.csv", "not a plain file name"),
        ("", "not a plain file name"),
    ],
)
def test_odd_file_names_are_refused_and_nothing_is_kept(
    server: LiveServer, name: str, problem: str
) -> None:
    before = uploads(server)
    reply = upload(server, [(name, b"a,b\n1,2\n")], server.token)
    assert reply.status_code in (400, 422), reply.text
    if reply.status_code == 400:
        assert problem in reply.json()["error"]
    assert uploads(server) == before


def test_a_path_in_the_name_keeps_only_the_file_name(server: LiveServer) -> None:
    reply = upload(server, [("../../../../tmp/escape.csv", b"a,b\n1,2\n")], server.token)
    assert reply.status_code == 201, reply.text
    stored = Path(reply.json()["path"])
    assert stored.name == "escape.csv"
    assert stored.resolve().is_relative_to((server.home / "data" / "uploads").resolve())
    assert not Path("/tmp/escape.csv").exists()


def test_only_deployers_may_upload_and_an_upload_over_the_limit_leaves_nothing(
    server: LiveServer,
) -> None:
    with server.client() as client:
        viewer = str(client.create_token("looker", "viewer")["token"])
    before = uploads(server)
    assert upload(server, [("a.csv", b"a\n1\n")], None).status_code == 401
    assert upload(server, [("a.csv", b"a\n1\n")], viewer).status_code == 403
    big = b"x" * (600 << 10)
    over = upload(server, [("one.csv", big), ("two.csv", big)], server.token)  # 1.2 MB > 1 MB
    assert over.status_code == 413, over.text
    assert uploads(server) == before
    twice = upload(server, [("same.csv", b"a\n"), ("same.csv", b"b\n")], server.token)
    assert twice.status_code == 400
    assert "same name" in twice.json()["error"]
