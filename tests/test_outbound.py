"""`turnout serve` (gateway, model host, runners, log writers) makes no network connection and
no DNS lookup its operator did not configure: every process is traced while an ONNX model is
registered, deployed and answers."""

from __future__ import annotations

import ipaddress
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fixtures.models import breast_cancer, save_onnx
from tests.fixtures.server import LiveServer

pytestmark = pytest.mark.server

ADDRESS = re.compile(r'inet_(?:addr\("|pton\(AF_INET6, ")(?P<address>[^"]+)"')


def can_trace() -> bool:
    if shutil.which("strace") is None:
        return False
    done = subprocess.run(["strace", "-f", "-qq", "-o", "/dev/null", "true"],
                          capture_output=True, check=False)  # fmt: skip
    return done.returncode == 0


@pytest.fixture
def traced(tmp_path: Path) -> Iterator[tuple[LiveServer, Path]]:
    if not can_trace():
        pytest.skip("strace is missing or may not trace here")
    live = LiveServer(tmp_path / "home")
    live.home.mkdir(parents=True)
    trace = tmp_path / "trace"
    command = [
        "strace", "-f", "-qq", "-e", "trace=connect,sendto,sendmsg,openat", "-o", str(trace),
        sys.executable, "-m", "turnout", "serve", "--port", str(live.port),
    ]  # fmt: skip
    with live.log.open("ab") as log:
        live.process = subprocess.Popen(
            command, env=live.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    deadline = time.monotonic() + 120
    while True:
        assert live.process.poll() is None, live.log.read_text()
        assert time.monotonic() < deadline, live.log.read_text()
        try:
            if httpx.get(f"{live.url}/v2/health/ready", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.2)
    yield live, trace
    live.stop()


def outbound(trace: Path) -> list[str]:
    """Trace lines that reach past this machine or ask a DNS resolver."""
    found = []
    for line in trace.read_text(errors="replace").splitlines():
        if "/etc/resolv.conf" in line or "htons(53)" in line:
            found.append(line)
        elif "connect(" in line and ("AF_INET" in line):
            match = ADDRESS.search(line)
            if match is None or not ipaddress.ip_address(match["address"]).is_loopback:
                found.append(line)
    return found


def test_serving_an_onnx_model_makes_no_outbound_connection(
    traced: tuple[LiveServer, Path], tmp_path: Path
) -> None:
    server, trace = traced
    path, _ = save_onnx(tmp_path)
    features, _ = breast_cancer()
    with server.client() as client:
        client.register("onnx", path, flavor="onnx")
        client.create_deployment("onnx-prod", model="onnx", version=1)
        answer = client.predict("onnx-prod", features.iloc[:5].to_numpy().tolist())
    assert len(answer["predictions"]) == 5
    server.stop()  # the log writers flush and every process exits

    assert "onnxruntime" in trace.read_text(errors="replace")  # the runners were traced too
    assert outbound(trace) == []
