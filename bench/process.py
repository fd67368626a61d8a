"""Start a server command in its own process group, wait until it answers, stop the whole group.

Every peer in the suite (turnout, MLServer, mlflow, the bare app) runs through this, so no
worker process outlives its benchmark and every server binds to loopback only.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx

SERVER_PATTERN = "mlserver|uvicorn|turnout serve|mlflow"


class StartFailed(RuntimeError):
    """A server exited or never became ready; the message ends with its log's last lines."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def log_tail(path: Path, lines: int = 15) -> str:
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


class Server:
    """One server process group; `start()` blocks until `ready_url` answers 200."""

    def __init__(
        self,
        command: Sequence[str],
        *,
        ready_url: str,
        log: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.command = list(command)
        self.ready_url = ready_url
        self.log = log
        self.env = {**os.environ, **(env or {})}
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def shell_command(self) -> str:
        return shlex.join(self.command)

    def start(self, timeout_s: float = 120.0) -> Server:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.command,
                env=self.env,
                cwd=self.cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.stop()
                raise StartFailed(f"exited with code {self.process_code}:\n{log_tail(self.log)}")
            try:
                if httpx.get(self.ready_url, timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise StartFailed(f"not ready after {timeout_s:.0f} s:\n{log_tail(self.log)}")

    @property
    def process_code(self) -> int | None:
        return None if self.process is None else self.process.returncode

    def stop(self, grace_s: float = 20.0) -> None:
        """SIGTERM the group, wait for the leader, then SIGKILL anything left in the group."""
        if self.process is None:
            return
        group = self.process.pid
        _signal_group(group, signal.SIGTERM)
        try:
            self.process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            _signal_group(group, signal.SIGKILL)
            self.process.wait()
        deadline = time.monotonic() + 5.0
        while _signal_group(group, 0) and time.monotonic() < deadline:
            time.sleep(0.1)
        _signal_group(group, signal.SIGKILL)


def _signal_group(group: int, sig: int) -> bool:
    """Send `sig` to a process group; False when no process is left in it."""
    try:
        os.killpg(group, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def leftovers(sessions: list[int]) -> tuple[list[str], list[str]]:
    """(processes of servers this suite started still alive, any server process on the box).

    The second list can name servers of other people's test runs; only the first is ours.
    """
    table = subprocess.run(["ps", "-eo", "sid=,pid=,args="], capture_output=True, text=True)
    ours = [
        line.strip()
        for line in table.stdout.splitlines()
        if line.split() and line.split()[0].isdigit() and int(line.split()[0]) in sessions
    ]
    found = subprocess.run(["pgrep", "-af", SERVER_PATTERN], capture_output=True, text=True)
    anyone = [line for line in found.stdout.splitlines() if "pgrep" not in line]
    return ours, anyone
