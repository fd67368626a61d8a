"""Hundreds of models on one node, at a size CI affords: every answer right, memory bounded.

The full-size numbers (1,000 models, 10,000 versions under a budget) are measured by
`python -m bench.scale`; this checks the behaviour they rest on.
"""

from __future__ import annotations

import os
import socket
import struct
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.fixtures.hosting import ROWS, descendants, host_status, pss_bytes, small_model
from tests.fixtures.server import LiveServer

pytestmark = [pytest.mark.server, pytest.mark.slow]

DEPLOYMENTS = 200
TREE_LIMIT_BYTES = 1536 << 20
"""Well under the 4 GB that 1,000 models may take: 200 small ones need a fraction of it."""


def test_two_hundred_deployments_answer_right_within_a_bounded_memory(tmp_path: Path) -> None:
    server = LiveServer(tmp_path / "home", env={"TURNOUT_RUNNER_POOL": "2"}).start()
    try:
        expected: dict[str, list[int]] = {}
        with server.client() as client:
            for i in range(DEPLOYMENTS):
                path, answers = small_model(tmp_path / "models", i)
                client.register(f"m{i}", path, flavor="sklearn")
                client.create_deployment(f"d{i}", model=f"m{i}", version=1)
                expected[f"d{i}"] = answers.tolist()

        def answer(name: str) -> list[int]:
            reply = httpx.post(
                f"{server.url}/v1/deployments/{name}/predict",
                json={"instances": ROWS.tolist()},
                timeout=60,
            )
            assert reply.status_code == 200, reply.text
            return reply.json()["predictions"]  # type: ignore[no-any-return]

        with ThreadPoolExecutor(8) as pool:
            answers = dict(zip(expected, pool.map(answer, expected), strict=True))
        assert answers == expected
        assert server.process is not None
        tree = [server.process.pid] + [pid for pid, _ in descendants(server.process.pid)]
        assert pss_bytes(tree) < TREE_LIMIT_BYTES
        status = host_status(server)
        shared = [r for r in status["runners"] if r["isolation"] == "shared"]
        assert len(shared) == 2
        assert sum(r["models"] for r in shared) == DEPLOYMENTS
        assert len(tree) < 12  # a handful of processes, not one per model
    finally:
        server.stop()


def host_socket(server: LiveServer) -> str:
    assert server.process is not None
    for _, command in descendants(server.process.pid):
        words = command.split()
        if "turnout.host.supervisor" in words:
            return words[words.index("turnout.host.supervisor") + 1]
    raise AssertionError("the server has no model host")


@pytest.mark.parametrize(
    "garbage",
    [
        b"\xff\xff\xff\xff",  # a frame longer than any allowed
        struct.pack(">I", 12) + struct.pack(">I", 500) + b"{}",  # header length past the frame
        struct.pack(">I", 6) + struct.pack(">I", 2) + b"[]",  # a header that is not an object
        os.urandom(4096),
    ],
    ids=["huge-length", "short-frame", "not-an-object", "random"],
)
def test_garbage_on_the_host_socket_leaves_the_node_serving(tmp_path: Path, garbage: bytes) -> None:
    server = LiveServer(tmp_path / "home").start()
    try:
        path, expected = small_model(tmp_path / "models", 1)
        with server.client() as client:
            client.register("m", path, flavor="sklearn")
            client.create_deployment("d", model="m", version=1)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(host_socket(server))
            sock.sendall(garbage)
        reply = httpx.post(
            f"{server.url}/v1/deployments/d/predict", json={"instances": ROWS.tolist()}
        )
        assert reply.status_code == 200, reply.text
        assert reply.json()["predictions"] == expected.tolist()
        assert host_status(server)["restarts"] == 0
    finally:
        server.stop()
