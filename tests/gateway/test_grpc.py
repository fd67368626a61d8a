"""OIP gRPC against a real `turnout serve`: tritonclient.grpc with its defaults, raw stubs for
what tritonclient will not send, deadlines, auth, bad requests, workers.

Requests are built with tritonclient's own copy of the protocol (`service_pb2`), so these
tests also hold turnout's stubs to the wire format other clients use.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc
from tritonclient.utils import InferenceServerException

from tests.fixtures.fault_models import (
    BENIGN_ROW,
    FAULTY_ROW,
    HEALTHY_VALUE,
    Fault,
    constant_model,
    faulty_model,
)
from tests.fixtures.models import breast_cancer, save_joblib, save_onnx, sklearn_pipeline
from tests.fixtures.server import LiveServer, free_port

pytestmark = pytest.mark.server

DEADLINE_MS = 300
"""The deployments' own deadline where one is set."""
PATIENT_MS = 20_000
"""A deployment deadline far past any caller's: the caller's must bind."""
CALLER_S = 1.0
"""A caller's gRPC deadline: well past `DEADLINE_MS`, well short of `PATIENT_MS`."""
HANG_MS = 3_000
"""When the model host takes a call as hung: past the callers' deadlines, so theirs bind."""
FAILOVER_VALUE = 2.0
FALLBACK_VALUE = -1.0
MAX_MESSAGE_BYTES = 64 << 20
"""The server's request size limit (its max body size)."""


class Server:
    """One live server with predict auth required and the models the tests call."""

    def __init__(self, live: LiveServer, grpc_port: int, models: dict[str, Any]) -> None:
        self.live = live
        self.grpc_url = f"127.0.0.1:{grpc_port}"
        self.models = models
        self.auth = {"authorization": f"Bearer {live.token}"}

    def triton(self) -> triton.InferenceServerClient:
        return triton.InferenceServerClient(self.grpc_url)

    def stub(self) -> tuple[grpc.Channel, pb_grpc.GRPCInferenceServiceStub]:
        channel = grpc.insecure_channel(
            self.grpc_url, options=[("grpc.max_send_message_length", -1)]
        )
        return channel, pb_grpc.GRPCInferenceServiceStub(channel)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("grpc")
    release = folder / "release"
    env = {"TURNOUT_PREDICT_AUTH": "required", "TURNOUT_RUNNER_HANG_MS": str(HANG_MS)}
    live = with_default_grpc_port(folder / "home", env).start()
    try:
        with live.client() as client:
            pipeline = sklearn_pipeline()
            client.register("bc", save_joblib(pipeline, folder), flavor="sklearn")
            client.create_deployment("bc-prod", model="bc", version=1)
            onnx_path, onnx_model = save_onnx(folder)
            client.register("bc-onnx", onnx_path, flavor="onnx")
            client.create_deployment("bc-onnx-prod", model="bc-onnx")
            _register(client, folder / "failover", constant_model, FAILOVER_VALUE)  # faulty:1
            for name, timeout_ms, failover, fallback in (
                ("hung-failover", DEADLINE_MS, 1, FALLBACK_VALUE),
                ("hung-fallback", PATIENT_MS, None, FALLBACK_VALUE),
                ("hung-bare", PATIENT_MS, None, None),
            ):
                hung = _register(  # a version of its own: a hang takes its runner down
                    client, folder / name, faulty_model, Fault.HANGS, release=release, tag=name
                )
                extra = {} if fallback is None else {"fallback": fallback}
                client.create_deployment(
                    name, model="faulty", version=hung, timeout_ms=timeout_ms,
                    failover=failover, **extra,
                )  # fmt: skip
        yield Server(live, live.port + 1, {"bc": pipeline, "bc-onnx": onnx_model})
    finally:
        release.touch()
        live.stop()


def with_default_grpc_port(home: Path, env: dict[str, str]) -> LiveServer:
    """A server whose default gRPC port (its HTTP port + 1) is free, so it is tested."""
    for _ in range(20):
        live = LiveServer(home, env=env)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", live.port + 1))
            except OSError:
                continue
        return live
    pytest.fail("no free pair of adjacent loopback ports")


def _register(client: Any, folder: Path, write: Any, *args: Any, **kwargs: Any) -> int:
    path = write(folder, *args, **kwargs)
    return int(client.register("faulty", path, flavor="python")["version"])


@pytest.fixture
def rows() -> np.ndarray:
    features, _ = breast_cancer()
    return features.to_numpy(dtype=np.float64)[::37]


def infer(
    server: Server, deployment: str, rows: np.ndarray, datatype: str = "FP64", **kwargs: Any
) -> triton.InferResult:
    """tritonclient.grpc with its defaults (raw tensors both ways)."""
    kwargs.setdefault("headers", server.auth)
    client = server.triton()
    try:
        tensor = triton.InferInput("input-0", list(rows.shape), datatype)
        tensor.set_data_from_numpy(rows)
        return client.infer(deployment, [tensor], **kwargs)
    finally:
        client.close()


def role(result: triton.InferResult) -> str:
    return str(result.get_response().parameters["role"].string_param)


def test_tritonclient_matches_sklearn(server: Server, rows: np.ndarray) -> None:
    result = infer(server, "bc-prod", rows, request_id="req-1")
    expected = server.models["bc"].predict(breast_cancer()[0].iloc[::37])
    np.testing.assert_array_equal(result.as_numpy("predict"), expected)
    proba = server.models["bc"].predict_proba(breast_cancer()[0].iloc[::37])
    np.testing.assert_allclose(result.as_numpy("predict_proba"), proba, rtol=1e-12)
    response = result.get_response()
    assert (response.id, response.model_name, response.model_version) == ("req-1", "bc-prod", "1")
    assert response.raw_output_contents  # answered raw, as tritonclient expects
    assert role(result) == "champion"


def test_tritonclient_matches_onnx(server: Server, rows: np.ndarray) -> None:
    single = rows.astype(np.float32)
    result = infer(server, "bc-onnx-prod", single, datatype="FP32")
    np.testing.assert_array_equal(
        result.as_numpy("predict"), server.models["bc-onnx"].predict(single)
    )


def test_requested_outputs_only(server: Server, rows: np.ndarray) -> None:
    outputs = [triton.InferRequestedOutput("predict_proba")]
    result = infer(server, "bc-prod", rows, outputs=outputs)
    assert [o.name for o in result.get_response().outputs] == ["predict_proba"]


def test_typed_contents_and_turnout_metadata(server: Server) -> None:
    """A request with typed contents instead of raw ones; x-turnout-* come back as metadata."""
    row = breast_cancer()[0].to_numpy(dtype=np.float64)[:2]
    request = pb.ModelInferRequest(model_name="bc-prod", id="order-42")
    tensor = request.inputs.add(name="input-0", datatype="FP64", shape=list(row.shape))
    tensor.contents.fp64_contents.extend(row.ravel().tolist())
    channel, stub = server.stub()
    with channel:
        response, call = stub.ModelInfer.with_call(request, metadata=tuple(server.auth.items()))
    metadata = dict(call.trailing_metadata())
    assert metadata["x-turnout-prediction-id"] == "order-42"
    assert metadata["x-turnout-model-version"] == "1"
    assert metadata["x-turnout-role"] == "champion"
    assert metadata["x-turnout-revision"] == "1"
    labels = np.frombuffer(response.raw_output_contents[0], dtype="<i8")
    np.testing.assert_array_equal(labels, server.models["bc"].predict(breast_cancer()[0][:2]))


def test_one_input_per_column(server: Server) -> None:
    """A model fitted on named columns also takes one [rows] tensor per column, as over HTTP."""
    sample = breast_cancer()[0].iloc[:3]
    inputs = []
    for name in reversed(list(sample.columns)):
        tensor = triton.InferInput(name, [3], "FP64")
        tensor.set_data_from_numpy(sample[name].to_numpy(dtype=np.float64))
        inputs.append(tensor)
    client = server.triton()
    try:
        result = client.infer("bc-prod", inputs, headers=server.auth)
    finally:
        client.close()
    np.testing.assert_array_equal(result.as_numpy("predict"), server.models["bc"].predict(sample))


def test_sticky_routing_reads_call_metadata(server: Server, tmp_path: Path) -> None:
    """`header:x-user` keeps each user on one version; users spread over both versions."""
    with server.live.client() as client:
        challenger = int(
            client.register(
                "bc", save_joblib(sklearn_pipeline(c=0.01), tmp_path), flavor="sklearn"
            )["version"]
        )
        client.create_deployment("bc-sticky", model="bc", version=1)
        applied = client.route(
            "bc-sticky", challengers={challenger: 50}, sticky_key="header:x-user"
        )
    until(lambda: client_sees_revision(server, "bc-sticky", int(applied["revision"])),
          "the workers serve the new revision")  # fmt: skip
    rows = breast_cancer()[0].to_numpy(dtype=np.float64)[:1]
    seen: dict[str, set[str]] = {}
    for user in (f"user-{i}" for i in range(24)):
        for _ in range(3):
            result = infer(server, "bc-sticky", rows, headers={**server.auth, "x-user": user})
            seen.setdefault(user, set()).add(result.get_response().model_version)
    assert all(len(versions) == 1 for versions in seen.values()), seen
    assert set().union(*seen.values()) == {"1", str(challenger)}


def client_sees_revision(server: Server, deployment: str, revision: int) -> bool:
    result = infer(server, deployment, breast_cancer()[0].to_numpy(dtype=np.float64)[:1])
    return int(result.get_response().parameters["revision"].int64_param) >= revision


def test_metadata_and_readiness(server: Server) -> None:
    client = server.triton()
    try:
        assert client.is_server_live()
        assert client.is_server_ready()
        assert client.is_model_ready("bc-prod", headers=server.auth)
        meta = client.get_server_metadata(as_json=True)
        assert meta["name"] == "turnout"
        model = client.get_model_metadata("bc-prod", headers=server.auth, as_json=True)
        assert (model["name"], model["platform"], model["versions"]) == (
            "bc-prod",
            "sklearn",
            ["1"],
        )
        assert model["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": ["-1", "30"]}]
        shapes = {o["name"]: o["shape"] for o in model["outputs"]}
        assert shapes == {"predict": ["-1"], "predict_proba": ["-1", "2"]}
        with pytest.raises(InferenceServerException, match="NOT_FOUND"):
            client.is_model_ready("nope", headers=server.auth)
    finally:
        client.close()


def test_rpcs_turnout_does_not_serve_are_unimplemented(server: Server) -> None:
    channel, stub = server.stub()
    with channel, pytest.raises(grpc.RpcError) as raised:
        stub.ModelConfig(pb.ModelConfigRequest(name="bc-prod"), metadata=tuple(server.auth.items()))
    assert raised.value.code() is grpc.StatusCode.UNIMPLEMENTED


# -- deadlines ---------------------------------------------------------------------------------


def until_healthy(server: Server, deployment: str, timeout_s: float = 60.0) -> None:
    """Until the champion answers a benign row: the runner a previous hang took down is back."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            result = infer(server, deployment, np.array([BENIGN_ROW]), client_timeout=30)
        except InferenceServerException:
            result = None
        if result is not None and role(result) == "champion":
            assert result.as_numpy("predict").tolist() == [HEALTHY_VALUE]
            return
        time.sleep(0.1)
    pytest.fail(f"{deployment}: the champion did not answer within {timeout_s}s")


def test_hung_champion_fails_over_within_the_deadline(server: Server) -> None:
    until_healthy(server, "hung-failover")
    rows = np.array([FAULTY_ROW])
    result = infer(server, "hung-failover", rows, client_timeout=CALLER_S)
    assert (role(result), result.as_numpy("predict").tolist()) == ("failover", [FAILOVER_VALUE])


def test_a_shorter_caller_deadline_gets_the_fallback_in_time(server: Server) -> None:
    """The caller's deadline takes the place of a longer deployment deadline: the fallback
    answers before the caller gives up, as it would at the deployment's own deadline."""
    until_healthy(server, "hung-fallback")
    rows = np.array([FAULTY_ROW])
    result = infer(server, "hung-fallback", rows, client_timeout=CALLER_S)
    assert (role(result), result.as_numpy("predict").tolist()) == ("fallback", [FALLBACK_VALUE])


def test_a_shorter_caller_deadline_without_fallback_is_deadline_exceeded(server: Server) -> None:
    until_healthy(server, "hung-bare")
    with pytest.raises(InferenceServerException, match="DEADLINE_EXCEEDED"):
        infer(server, "hung-bare", np.array([FAULTY_ROW]), client_timeout=CALLER_S)
    until_healthy(server, "hung-bare")  # and it serves again once the hung runner is replaced


# -- auth --------------------------------------------------------------------------------------


def test_a_token_is_required(server: Server, rows: np.ndarray) -> None:
    with pytest.raises(InferenceServerException, match="UNAUTHENTICATED"):
        infer(server, "bc-prod", rows, headers={})
    with pytest.raises(InferenceServerException, match="UNAUTHENTICATED"):
        infer(server, "bc-prod", rows, headers={"authorization": "Bearer made-up"})
    with server.live.client() as client:
        scoped = client.create_token("onnx-only", "predictor", deployments=["bc-onnx-prod"])
    with pytest.raises(InferenceServerException, match="PERMISSION_DENIED"):
        infer(server, "bc-prod", rows, headers={"authorization": f"Bearer {scoped['token']}"})
    assert infer(server, "bc-prod", rows).as_numpy("predict") is not None


# -- bad requests ------------------------------------------------------------------------------


def bad_request(rows: np.ndarray, **changes: Any) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="bc-prod")
    request.inputs.add(name="input-0", datatype="FP64", shape=list(rows.shape))
    request.raw_input_contents.append(rows.astype("<f8").tobytes())
    for field, value in changes.items():
        if field == "datatype":
            request.inputs[0].datatype = value
        elif field == "raw":
            del request.raw_input_contents[:]
            request.raw_input_contents.extend(value)
        else:
            setattr(request, field, value)
    return request


@pytest.mark.parametrize(
    ("changes", "code", "says"),
    [
        ({"raw": []}, grpc.StatusCode.INVALID_ARGUMENT, "needs"),
        ({"raw": [b"", b""]}, grpc.StatusCode.INVALID_ARGUMENT, "2 entries for 1 inputs"),
        ({"datatype": "FP32"}, grpc.StatusCode.INVALID_ARGUMENT, "needs"),
        ({"datatype": "FP128"}, grpc.StatusCode.INVALID_ARGUMENT, "unknown datatype"),
        ({"model_name": "nope"}, grpc.StatusCode.NOT_FOUND, "'nope' not found"),
        ({"model_version": "x"}, grpc.StatusCode.INVALID_ARGUMENT, "positive integer"),
    ],
)
def test_bad_requests_get_a_clear_code(
    server: Server, rows: np.ndarray, changes: dict[str, Any], code: grpc.StatusCode, says: str
) -> None:
    channel, stub = server.stub()
    with channel:
        with pytest.raises(grpc.RpcError) as raised:
            stub.ModelInfer(bad_request(rows, **changes), metadata=tuple(server.auth.items()))
        assert raised.value.code() is code
        assert says in str(raised.value.details())
        assert stub.ModelInfer(bad_request(rows), metadata=tuple(server.auth.items())).outputs


def test_raw_lengths_that_do_not_add_up(server: Server, rows: np.ndarray) -> None:
    request = bad_request(rows, raw=[rows.astype("<f8").tobytes()[:-3]])
    channel, stub = server.stub()
    with channel, pytest.raises(grpc.RpcError) as raised:
        stub.ModelInfer(request, metadata=tuple(server.auth.items()))
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "bytes" in str(raised.value.details())


def test_a_message_over_the_size_limit_is_refused(server: Server) -> None:
    n = MAX_MESSAGE_BYTES // (30 * 8) + 1
    big = np.zeros((n, 30))
    channel, stub = server.stub()
    with channel:
        with pytest.raises(grpc.RpcError) as raised:
            stub.ModelInfer(bad_request(big), metadata=tuple(server.auth.items()))
        assert raised.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        rows = np.zeros((2, 30))
        assert stub.ModelInfer(bad_request(rows), metadata=tuple(server.auth.items())).outputs


# -- the port, workers -------------------------------------------------------------------------


LISTEN, ESTABLISHED = "0A", "01"


def sockets(session: int, state: str) -> list[tuple[int, int]]:
    """(pid, local port) of every TCP socket in `state` held by a process of `session`."""
    ports: dict[str, int] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as fh:
            for line in fh.readlines()[1:]:
                fields = line.split()
                if fields[3] == state:
                    ports[fields[9]] = int(fields[1].rsplit(":", 1)[1], 16)
    held = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.getsid(int(pid)) != session:
                continue
            links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        except (ProcessLookupError, FileNotFoundError, PermissionError):
            continue
        for link in links:
            inode = link.removeprefix("socket:[").removesuffix("]")
            if link.startswith("socket:[") and inode in ports:
                held.append((int(pid), ports[inode]))
    return held


def listening(session: int) -> dict[int, int]:
    """Listening ports of the session's processes, with how many sockets each has."""
    counts: dict[int, int] = {}
    for _, port in sockets(session, LISTEN):
        counts[port] = counts.get(port, 0) + 1
    return counts


def until(check: Any, what: str, timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"not within {timeout_s}s: {what}")


def test_grpc_port_zero_turns_grpc_off(tmp_path: Path) -> None:
    live = LiveServer(tmp_path / "home", env={"TURNOUT_GRPC_PORT": "0"}).start()
    try:
        assert live.process is not None
        session = live.process.pid
        until(lambda: live.port in listening(session), "HTTP listens")
        assert set(listening(session)) <= {live.port}, listening(session)
    finally:
        live.stop()


def test_two_workers_both_serve_the_port(tmp_path: Path) -> None:
    grpc_port = free_port()
    env = {"TURNOUT_GRPC_PORT": str(grpc_port)}
    live = LiveServer(tmp_path / "home", workers=2, env=env).start()
    try:
        assert live.process is not None
        session = live.process.pid
        until(lambda: listening(session).get(grpc_port) == 2, "both workers listen on gRPC")
        with live.client() as client:
            model = sklearn_pipeline()
            client.register("bc", save_joblib(model, tmp_path), flavor="sklearn")
            client.create_deployment("bc-prod", model="bc", version=1)
        rows = breast_cancer()[0].to_numpy(dtype=np.float64)[:3]
        expected = model.predict(breast_cancer()[0][:3])
        # separate connections, kept open: the kernel spreads them over both workers' sockets
        clients = [
            triton.InferenceServerClient(
                f"127.0.0.1:{grpc_port}", channel_args=[("grpc.use_local_subchannel_pool", 1)]
            )
            for _ in range(16)
        ]
        try:
            for client in clients:
                tensor = triton.InferInput("input-0", list(rows.shape), "FP64")
                tensor.set_data_from_numpy(rows)
                result = client.infer("bc-prod", [tensor], client_timeout=60)
                np.testing.assert_array_equal(result.as_numpy("predict"), expected)
            answering = {pid for pid, port in sockets(session, ESTABLISHED) if port == grpc_port}
            assert len(answering) == 2, answering
        finally:
            for client in clients:
                client.close()
    finally:
        live.stop()


SLOW = """
import time
import numpy as np


class Model:
    n_features = 30

    def predict(self, X):
        if X[0][0] > 1000:
            time.sleep(0.8)
        return np.ones(len(X), dtype=np.int64)
"""


def test_sigterm_lets_calls_in_flight_finish(tmp_path: Path) -> None:
    (tmp_path / "slow.py").write_text(SLOW)
    grpc_port = free_port()
    env = {"TURNOUT_GRPC_PORT": str(grpc_port), "TURNOUT_SHUTDOWN_GRACE_MS": "1500"}
    live = LiveServer(tmp_path / "home", env=env).start()
    try:
        with live.client() as client:
            client.register("slow", tmp_path / "slow.py", flavor="python")
            client.create_deployment("slow-prod", model="slow", version=1)
        url = f"127.0.0.1:{grpc_port}"
        answers: list[list[int]] = []

        def slow_call() -> None:
            client = triton.InferenceServerClient(url)
            try:
                tensor = triton.InferInput("input-0", [1, 30], "FP64")
                tensor.set_data_from_numpy(np.full((1, 30), 5000.0))
                result = client.infer("slow-prod", [tensor], client_timeout=60)
                answers.append(result.as_numpy("predict").tolist())
            finally:
                client.close()

        slow_call()  # loaded and warm
        threads = [threading.Thread(target=slow_call) for _ in range(3)]
        for thread in threads:
            thread.start()
        assert live.process is not None
        os.kill(live.process.pid, signal.SIGTERM)
        probe = triton.InferenceServerClient(url)
        try:
            until(lambda: not probe.is_server_ready(), "not ready once SIGTERM arrives")
            assert probe.is_server_live()
        finally:
            probe.close()
        for thread in threads:
            thread.join(timeout=60)
        assert answers == [[1]] * 4  # every call in flight was answered
        live.process.wait(timeout=60)
    finally:
        live.stop()
