"""The server the quickstart talks to: one already running at TURNOUT_URL, or a
`turnout serve` it starts itself (in a temporary home, or in ~/.turnout with `--serve`)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from turnout.cli.output import console
from turnout.client import ApiError, Client, ServerUnreachable
from turnout.errors import TurnoutError
from turnout.settings import Settings

READY_TIMEOUT_S = 60
STOP_TIMEOUT_S = 20


@dataclass(frozen=True)
class LocalServer:
    """A `turnout serve` process the quickstart started; `temporary` homes are removed."""

    process: subprocess.Popen[bytes]
    home: Path
    url: str
    temporary: bool

    def client(self) -> Client:
        return Client(self.url, (self.home / "admin.token").read_text().strip())

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
        if self.temporary:
            shutil.rmtree(self.home, ignore_errors=True)


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(home: Path, port: int, *, temporary: bool) -> LocalServer:
    """Start `turnout serve` on `port` with its state in `home`, and wait until it is ready."""
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "TURNOUT_HOME": str(home), "TURNOUT_URL": url}
    env.setdefault("TURNOUT_CONTROLLER_INTERVAL_MS", "500")  # the tour's rollouts move quickly
    for name in ("TURNOUT_TOKEN", "TURNOUT_DATABASE_URL", "TURNOUT_ARTIFACT_ROOT"):
        env.pop(name, None)
    home.mkdir(parents=True, exist_ok=True)
    with (home / "server.log").open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "turnout", "serve", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = LocalServer(process, home, url, temporary)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise TurnoutError(f"the server exited:\n{(home / 'server.log').read_text()[-2000:]}")
        if (home / "admin.token").exists() and _ready(url):
            return server
        time.sleep(0.1)
    server.stop()
    raise TurnoutError(f"the server did not become ready within {READY_TIMEOUT_S} s")


def _ready(url: str) -> bool:
    with Client(url, "-") as probe:
        return probe.ready()


def existing_server() -> Client | None:
    """A running server at TURNOUT_URL that accepts our token, if there is one."""
    settings = Settings()
    client = Client()
    try:
        client.whoami()
    except (ServerUnreachable, ApiError):
        client.close()
        return None
    console.print(f"using the running server at {settings.server_url}")
    return client


def wait_for_ctrl_c(server: LocalServer) -> None:
    console.print(f"\nserver running at {server.url} (home {server.home}); press Ctrl-C to stop it")
    try:
        while server.process.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        console.print("stopping")
