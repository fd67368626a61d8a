"""The management API reads no body before a valid token, and no body past its limit:
the abuse is tried against a real server, whose memory and disk are watched."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fixtures.server import LiveServer

pytestmark = pytest.mark.server

MB = 1 << 20


@pytest.fixture(scope="module")
def spool(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The server's TMPDIR: where a multipart parser spools uploads."""
    return tmp_path_factory.mktemp("spool")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, spool: Path) -> Iterator[LiveServer]:
    home = tmp_path_factory.mktemp("limits") / "home"
    live = LiveServer(home, env={"TURNOUT_RUNNER": "thread", "TMPDIR": str(spool)}).start()
    yield live
    live.stop()


def peak_rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def tree_bytes(*roots: Path) -> int:
    return sum(p.stat().st_size for root in roots for p in root.rglob("*") if p.is_file())


def send_head_first(
    server: LiveServer,
    path: str,
    *,
    length: int,
    content_type: str,
    token: str | None = None,
    sent: int = MB,
) -> str:
    """Declares a `length`-byte body, sends only its first `sent` bytes, then waits for the
    answer: a server that reads the body first never answers in time."""
    head = [
        f"POST {path} HTTP/1.1",
        f"host: 127.0.0.1:{server.port}",
        f"content-type: {content_type}",
        f"content-length: {length}",
    ]
    if token is not None:
        head.append(f"authorization: Bearer {token}")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        with contextlib.suppress(OSError):  # the server may answer and close before this
            sock.sendall(b"[" + b"1," * ((sent - 2) // 2))
        answer = b""
        try:
            while b"\r\n\r\n" not in answer:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
        except TimeoutError:
            pytest.fail(f"no answer to {path} before the body was sent")
        try:  # the rest of the body: the server has closed, or reads and drops it
            for _ in range(8):
                sock.sendall(b"1," * (MB // 2))
        except OSError:
            pass
    return answer.decode(errors="replace").split("\r\n", 1)[0]


def test_a_100_mb_json_body_without_a_token_is_401_before_it_is_read(server: LiveServer) -> None:
    assert server.process is not None
    pid = server.process.pid
    small = httpx.post(f"{server.url}/api/v1/deployments", json={"name": "d"})
    assert small.status_code == 401
    before = peak_rss_bytes(pid)

    status = send_head_first(
        server, "/api/v1/deployments", length=100 * MB, content_type="application/json"
    )

    assert status.startswith("HTTP/1.1 401"), status
    assert peak_rss_bytes(pid) - before < 20 * MB
    assert httpx.get(f"{server.url}/v2/health/ready").status_code == 200


def test_a_300_mb_upload_without_a_token_spools_nothing(server: LiveServer, spool: Path) -> None:
    before = tree_bytes(server.home, spool)
    status = send_head_first(
        server,
        "/api/v1/models/m/versions",
        length=300 * MB,
        content_type="multipart/form-data; boundary=x",
        sent=4 * MB,
    )
    assert status.startswith("HTTP/1.1 401"), status
    assert tree_bytes(server.home, spool) - before < MB


def test_a_bad_token_is_401_before_the_body(server: LiveServer) -> None:
    status = send_head_first(
        server, "/api/v1/apply", length=50 * MB, content_type="application/json", token="tnt_no"
    )
    assert status.startswith("HTTP/1.1 401"), status


def test_a_declared_body_over_the_limit_is_413_before_it_is_read(server: LiveServer) -> None:
    status = send_head_first(
        server, "/api/v1/deployments", length=100 * MB, content_type="application/json",
        token=server.token,
    )  # fmt: skip
    assert status.startswith("HTTP/1.1 413"), status


def test_a_streamed_body_over_the_limit_is_413(server: LiveServer) -> None:
    def chunks() -> Iterator[bytes]:
        yield b"["
        for _ in range(40):  # 20 MiB, no content-length: chunked
            yield b"1," * (MB // 4)

    response = httpx.post(
        f"{server.url}/api/v1/deployments",
        content=chunks(),
        headers={"authorization": f"Bearer {server.token}", "content-type": "application/json"},
        timeout=60,
    )
    assert response.status_code == 413
    assert response.json() == {"error": "request body over 16 MiB"}


def test_bodies_within_limits_still_work(server: LiveServer) -> None:
    response = httpx.post(
        f"{server.url}/api/v1/deployments",
        json={"name": "d", "model": "nope", "version": 1},
        headers={"authorization": f"Bearer {server.token}"},
    )
    assert response.status_code == 404
    assert "nope" in response.json()["error"]
