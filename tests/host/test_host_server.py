"""The model host behind a real `turnout serve`: shared runners, eviction, crashes, isolation."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.fixtures.fault_models import constant_model
from tests.fixtures.hosting import FEATURES, ROWS, descendants, host_status, small_model
from tests.fixtures.server import LiveServer
from turnout.client import ApiError
from turnout.host.priority import LOW_PRIORITY

pytestmark = pytest.mark.server


def predict(server: LiveServer, deployment: str) -> httpx.Response:
    return httpx.post(
        f"{server.url}/v1/deployments/{deployment}/predict",
        json={"instances": ROWS.tolist()},
        timeout=30,
    )


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[object]:
    servers: list[LiveServer] = []

    def start(*, workers: int = 1, **env: str) -> LiveServer:
        server = LiveServer(tmp_path / f"home{len(servers)}", workers=workers, env=env).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def deploy_models(server: LiveServer, folder: Path, n: int, **options: object) -> dict[str, list]:  # type: ignore[type-arg]
    expected = {}
    with server.client() as client:
        for i in range(n):
            path, answers = small_model(folder, i)
            client.register(f"m{i}", path, flavor="sklearn")
            client.create_deployment(f"d{i}", model=f"m{i}", version=1, **options)  # type: ignore[arg-type]
            expected[f"d{i}"] = answers.tolist()
    return expected


def test_two_workers_share_one_model_host_and_its_runners(serve, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server = serve(workers=2, TURNOUT_RUNNER_POOL="2")
    expected = deploy_models(server, tmp_path / "models", 6)
    for _ in range(5):  # both workers answer some of these
        for name, answers in expected.items():
            reply = predict(server, name)
            assert reply.status_code == 200, reply.text
            assert reply.json()["predictions"] == answers
    assert server.process is not None
    tree = descendants(server.process.pid)
    supervisors = [p for p, c in tree if "turnout.host.supervisor" in c]
    templates = [p for p, c in tree if "turnout.host.template" in c]
    assert len(supervisors) == 1
    status = host_status(server)
    shared = [r for r in status["runners"] if r["isolation"] == "shared"]
    assert len(shared) == 2
    assert sum(r["models"] for r in shared) == 6
    # the template plus its runners: no process per version, none per worker
    assert len(templates) == 1 + len(status["runners"])


def test_a_tiny_budget_evicts_the_least_recently_used_and_reloads_on_demand(  # type: ignore[no-untyped-def]
    serve, tmp_path: Path
) -> None:
    server = serve(TURNOUT_MODEL_MEMORY_MB="2", TURNOUT_RUNNER_POOL="1")
    expected = deploy_models(server, tmp_path / "models", 16)  # 16 x at least 256 KB
    for _ in range(2):
        for name, answers in expected.items():
            reply = predict(server, name)
            assert reply.status_code == 200, reply.text
            assert reply.json()["predictions"] == answers
    status = host_status(server)
    assert status["evictions"] > 0
    assert status["used_bytes"] <= status["budget_bytes"] == 2 << 20
    loaded = [m for m in status["models"] if m["loaded"]]
    assert 0 < len(loaded) < 16
    assert sum(m["loads"] for m in status["models"]) > 16  # some were loaded again
    metrics = httpx.get(f"{server.url}/metrics").text
    assert "turnout_host_evictions_total" in metrics
    with server.client() as client:
        shown = client.show_deployment("d0")
    assert [m["key"] for m in shown["hosting"]] == ["m0:1"]


def test_a_shared_runner_killed_under_its_models_loses_no_request(  # type: ignore[no-untyped-def]
    serve, tmp_path: Path
) -> None:
    server = serve(TURNOUT_RUNNER_POOL="2")
    expected = {}
    with server.client() as client:
        for i in range(50):
            path, answers = small_model(tmp_path / "models", i)
            client.register(f"m{i}", path, flavor="sklearn")
            client.register(f"m{i}", path, flavor="sklearn", tags={"copy": "failover"})
            client.create_deployment(
                f"d{i}", model=f"m{i}", version=1, failover=2, fallback=-1, timeout_ms=2000
            )
            expected[f"d{i}"] = answers.tolist()
    for name in expected:
        assert predict(server, name).status_code == 200
    runners = [r for r in host_status(server)["runners"] if r["isolation"] == "shared"]
    victim = max(runners, key=lambda r: r["models"])
    assert victim["models"] >= 25
    os.kill(victim["pid"], signal.SIGKILL)
    for name, answers in expected.items():
        reply = predict(server, name)
        assert reply.status_code == 200, reply.text
        assert reply.headers["x-turnout-role"] in {"champion", "failover", "fallback"}
        if reply.headers["x-turnout-role"] != "fallback":
            assert reply.json()["predictions"] == answers
    deadline = time.monotonic() + 60
    pending = set(expected)
    while pending:  # every model is served by its champion again, reloaded elsewhere
        assert time.monotonic() < deadline, f"not reloaded: {sorted(pending)[:5]}"
        for name in sorted(pending):
            reply = predict(server, name)
            if reply.headers.get("x-turnout-role") == "champion":
                assert reply.json()["predictions"] == expected[name]
                pending.discard(name)
        time.sleep(0.1)
    status = host_status(server)
    assert victim["pid"] not in [r["pid"] for r in status["runners"]]
    assert status["restarts"] == 1


CRASHES_ON_BIG_ROWS = """
import os
import re
import numpy as np


class Model:
    n_features = 4

    def predict(self, X):
        X = np.asarray(X, dtype=float)
        if X[:, 0].max() > 1000:
            os._exit(3)
        return np.zeros(len(X))
"""


def test_the_model_that_took_a_shared_runner_down_runs_alone_afterwards(  # type: ignore[no-untyped-def]
    serve, tmp_path: Path
) -> None:
    server = serve(TURNOUT_RUNNER_POOL="1")
    expected = deploy_models(server, tmp_path / "models", 3)
    source = tmp_path / "crash" / "model.py"
    source.parent.mkdir()
    source.write_text(CRASHES_ON_BIG_ROWS)
    with server.client() as client:
        client.register("crashy", source, flavor="python")
        client.create_deployment("crashy", model="crashy", version=1, isolation="shared")
    ok = httpx.post(f"{server.url}/v1/deployments/crashy/predict", json={"instances": [[0] * 4]})
    assert ok.status_code == 200
    keys = {m["key"]: m for m in host_status(server)["models"]}
    assert keys["crashy:1"]["isolation"] == "shared"
    bad = httpx.post(
        f"{server.url}/v1/deployments/crashy/predict", json={"instances": [[5000, 0, 0, 0]]}
    )
    assert bad.status_code == 503  # no failover, no fallback: a clear error
    keys = {m["key"]: m for m in host_status(server)["models"]}
    assert keys["crashy:1"]["isolation"] == "dedicated"
    for name, answers in expected.items():  # its neighbours come back on a new runner
        reply = predict(server, name)
        assert reply.status_code == 200, reply.text
        assert reply.json()["predictions"] == answers
    deadline = time.monotonic() + 30
    while True:  # after its backoff the culprit serves again, alone
        reply = httpx.post(
            f"{server.url}/v1/deployments/crashy/predict", json={"instances": [[0] * 4]}
        )
        if reply.status_code == 200:
            break
        assert time.monotonic() < deadline, reply.text
        time.sleep(0.2)
    runners = host_status(server)["runners"]
    assert [r["isolation"] for r in runners].count("dedicated") == 1


EXITS_ON_LOAD = """
import os
import re


class Model:
    n_features = 4

    def load(self, path):
        os._exit(7)

    def predict(self, X):
        return X[:, 0]
"""

HANGS_ON_LOAD = """
import time
from concurrent.futures import ThreadPoolExecutor


class Model:
    n_features = 4

    def load(self, path):
        time.sleep(3600)

    def predict(self, X):
        return X[:, 0]
"""

READS_SECRETS = """
import os
import re


class Model:
    n_features = 4

    def load(self, path):
        leaked = {k: v for k, v in os.environ.items() if k.startswith("TURNOUT_") or "PG" in k}
        raise RuntimeError(f"environment: {leaked}")

    def predict(self, X):
        return X[:, 0]
"""


def register_source(server: LiveServer, folder: Path, source: str) -> dict:  # type: ignore[type-arg]
    folder.mkdir(parents=True)
    (folder / "model.py").write_text(source)
    with server.client() as client:
        return client.register("bad", folder / "model.py", flavor="python")  # type: ignore[no-any-return]


def test_a_model_that_exits_or_hangs_at_registration_leaves_the_server_serving(  # type: ignore[no-untyped-def]
    serve, tmp_path: Path
) -> None:
    server = serve(TURNOUT_REGISTER_TIMEOUT_MS="2000", TURNOUT_WEBHOOK_SECRET="s3cret")
    expected = deploy_models(server, tmp_path / "models", 1)
    with pytest.raises(ApiError, match="exit code 7") as exits:
        register_source(server, tmp_path / "exits", EXITS_ON_LOAD)
    assert exits.value.status == 422
    with pytest.raises(ApiError, match="within 2 s") as hangs:
        register_source(server, tmp_path / "hangs", HANGS_ON_LOAD)
    assert hangs.value.status == 422
    with pytest.raises(ApiError, match=re.escape("environment: {}")):  # no settings, no credentials
        register_source(server, tmp_path / "secrets", READS_SECRETS)
    with server.client() as client, pytest.raises(ApiError, match="not found"):
        client.show_model("bad")
    reply = predict(server, "d0")
    assert reply.status_code == 200
    assert reply.json()["predictions"] == expected["d0"]


HOARDS_MEMORY = """
import numpy as np


class Model:
    n_features = 4

    def load(self, path):
        self.table = np.ones(8 << 20)  # 64 MB

    def predict(self, X):
        return np.zeros(len(X))
"""


def test_a_model_larger_than_the_whole_budget_is_refused_at_deploy(serve, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server = serve(TURNOUT_MODEL_MEMORY_MB="16")
    record = register_source(server, tmp_path / "big", HOARDS_MEMORY)
    assert record["memory_bytes"] > 16 << 20
    with (
        server.client() as client,
        pytest.raises(ApiError, match=r"budget of 16 MB.*TURNOUT_MODEL_MEMORY_MB"),
    ):
        client.create_deployment("big", model="bad", version=1)


def test_a_cold_load_past_the_deadline_is_answered_by_the_failover(serve, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server = serve()
    slow = tmp_path / "slow" / "model.py"
    slow.parent.mkdir()
    slow.write_text(
        "import time\n\nclass Model:\n    n_features = 30\n\n"
        "    def load(self, path):\n        time.sleep(2)\n\n"
        "    def predict(self, X):\n        return X[:, 0]\n"
    )
    with server.client() as client:
        client.register("cold", slow, flavor="python")
        client.register("cold", constant_model(tmp_path / "fast", 7.0), flavor="python")
        client.create_deployment("cold", model="cold", version=1, failover=2, timeout_ms=300)
    reply = httpx.post(
        f"{server.url}/v1/deployments/cold/predict", json={"instances": [[1.0] * 30]}
    )
    assert reply.status_code == 200, reply.text
    assert reply.headers["x-turnout-role"] == "failover"
    assert reply.json()["predictions"] == [7.0]


def test_an_unknown_setting_value_stops_the_server_naming_the_variable(tmp_path: Path) -> None:
    env = {**os.environ, "TURNOUT_HOME": str(tmp_path), "TURNOUT_RUNNER": "fork"}
    result = subprocess.run(
        [sys.executable, "-m", "turnout", "serve", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "TURNOUT_RUNNER" in result.stderr
    assert "Traceback" not in result.stderr


BUSY_MODEL = """
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np


class Model:
    n_features = 4

    def predict(self, X):
        time.sleep(0.02)  # a model whose calls keep its runner busy
        return np.zeros(len(X))
"""


def test_a_hot_model_gets_a_replica_on_another_runner(serve, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server = serve(TURNOUT_RUNNER_POOL="2")
    source = tmp_path / "busy" / "model.py"
    source.parent.mkdir()
    source.write_text(BUSY_MODEL)
    with server.client() as client:
        client.register("busy", source, flavor="python")
        client.create_deployment("busy", model="busy", version=1, isolation="shared")

    def replicas() -> int:
        keys = {m["key"]: m for m in host_status(server)["models"]}
        return len(keys["busy:1"]["runners"]) if "busy:1" in keys else 0

    deadline = time.monotonic() + 60
    with ThreadPoolExecutor(16) as pool:
        while replicas() < 2:
            assert time.monotonic() < deadline, "no replica was added under load"
            replies = list(pool.map(lambda _: predict_one(server, "busy"), range(64)))
            assert all(r.status_code == 200 for r in replies)
    deadline = time.monotonic() + 60
    while replicas() > 1:  # the extra one goes once the load is gone
        assert time.monotonic() < deadline, "the idle replica was never removed"
        time.sleep(0.5)
    assert predict_one(server, "busy").status_code == 200


def predict_one(server: LiveServer, deployment: str) -> httpx.Response:
    return httpx.post(
        f"{server.url}/v1/deployments/{deployment}/predict",
        json={"instances": [[0.0] * FEATURES]},
        timeout=30,
    )


def test_a_killed_host_supervisor_is_started_again_and_models_come_back(  # type: ignore[no-untyped-def]
    serve, tmp_path: Path
) -> None:
    server = serve()
    expected = deploy_models(server, tmp_path / "models", 3, fallback=-1, timeout_ms=2000)
    for name in expected:
        assert predict(server, name).status_code == 200
    assert server.process is not None
    (supervisor,) = [
        pid for pid, command in descendants(server.process.pid)
        if "turnout.host.supervisor" in command
    ]  # fmt: skip
    os.kill(supervisor, signal.SIGKILL)
    deadline = time.monotonic() + 60
    pending = set(expected)
    while pending:
        assert time.monotonic() < deadline, f"not back: {sorted(pending)}"
        for name in sorted(pending):
            reply = predict(server, name)
            assert reply.status_code == 200, reply.text  # the fallback answers meanwhile
            if reply.headers["x-turnout-role"] == "champion":
                assert reply.json()["predictions"] == expected[name]
                pending.discard(name)
        time.sleep(0.1)
    assert supervisor not in [pid for pid, _ in descendants(server.process.pid)]


PEEKS_AT_THE_HOME = """
import os

import numpy as np

TOKEN = {token!r}


class Model:
    n_features = 4

    def load(self, path):
        try:
            with open(TOKEN) as f:
                raise RuntimeError("read: " + f.read())
        except OSError:
            pass  # what a runner should meet: the file is not there for it

    def predict(self, X):
        return np.full(len(X), float(os.path.exists(TOKEN)))
"""


def test_model_code_cannot_read_the_servers_home(serve, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Whether runners drop to an unprivileged user or must stay root (Python in a private
    folder), the admin token in the server's home is out of their reach."""
    server = serve()
    token_file = server.home / "admin.token"
    assert token_file.read_text().strip()
    folder = tmp_path / "peek"
    folder.mkdir()
    (folder / "model.py").write_text(PEEKS_AT_THE_HOME.format(token=str(token_file)))
    with server.client() as client:
        client.register("peek", folder / "model.py", flavor="python")  # its load read nothing
        client.create_deployment("peek", model="peek", version=1)
    reply = httpx.post(
        f"{server.url}/v1/deployments/peek/predict", json={"instances": [[0.0] * FEATURES]}
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["predictions"] == [0.0]  # the home is not there for model code


def nice_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def test_a_runner_holding_only_shadows_runs_at_low_cpu_priority_until_promoted(  # type: ignore[no-untyped-def]
    serve, tmp_path: Path
) -> None:
    server = serve()
    with server.client() as client:
        for seed in (1, 2):
            client.register("m", small_model(tmp_path / "models", seed)[0], flavor="sklearn")
        client.create_deployment("d", model="m", version=1, isolation="dedicated")
        client.route("d", shadows={2: 100})

    def nice_of_runner(key: str) -> int | None:
        status = host_status(server)
        pids = {r["id"]: r["pid"] for r in status["runners"]}
        for model in status["models"]:
            if model["key"] == key and model["runners"]:
                return nice_of(pids[model["runners"][0]])
        return None

    deadline = time.monotonic() + 60
    while nice_of_runner("m:2") != LOW_PRIORITY:
        assert time.monotonic() < deadline, f"the shadow's runner has nice {nice_of_runner('m:2')}"
        assert predict(server, "d").status_code == 200
        time.sleep(0.2)
    assert nice_of_runner("m:1") == 0  # the champion's runner keeps its priority
    with server.client() as client:
        client.promote("d", version=2)
    deadline = time.monotonic() + 60
    while nice_of_runner("m:2") != 0:
        assert time.monotonic() < deadline, "the promoted version's runner stayed at low priority"
        assert predict(server, "d").status_code == 200
        time.sleep(0.2)
