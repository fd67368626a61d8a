"""Run wrk against a URL with a JSON POST body and parse its summary (shared by benchmarks)."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import orjson

UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


@dataclass(frozen=True)
class Load:
    connections: int
    requests: int
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    errors: int
    raw: str
    command: tuple[str, ...] = ()


class WrkError(RuntimeError):
    """wrk failed or printed something unreadable; `raw` keeps its output for the record."""

    def __init__(self, message: str, raw: str) -> None:
        super().__init__(message)
        self.raw = raw


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not match:
        raise ValueError(f"cannot read wrk latency {text!r}")
    return float(match.group(1)) * UNITS_MS[match.group(2)]


def write_script(body: object, path: Path) -> Path:
    """A wrk Lua script that POSTs `body` as JSON on every request."""
    payload = orjson.dumps(body).decode().replace("\\", "\\\\").replace("'", "\\'")
    path.write_text(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = '{payload}'\n"
    )
    return path


def run(
    url: str,
    body: object,
    *,
    connections: int,
    duration_s: int,
    threads: int = 2,
    script: Path | None = None,
) -> Load:
    """One wrk run; `script` keeps the Lua file (written from `body` if missing) for the record."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk is not installed: apt-get install wrk (make bench does, as root)")
    with tempfile.TemporaryDirectory() as tmp:
        if script is None:
            script = write_script(body, Path(tmp) / "post.lua")
        elif not script.exists():
            write_script(body, script)
        command = (
            wrk, f"-t{min(threads, connections)}", f"-c{connections}", f"-d{duration_s}s",
            "--latency", "--timeout", "5s", "-s", str(script), url,
        )  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise WrkError(f"wrk exited with {done.returncode}: {done.stderr.strip()}", done.stdout)
    try:
        return parse(done.stdout, connections=connections, command=command)
    except (AttributeError, KeyError, ValueError) as error:
        raise WrkError(f"cannot read wrk's output ({error!r})", done.stdout) from error


def parse(out: str, *, connections: int, command: tuple[str, ...] = ()) -> Load:
    """wrk's `--latency` summary as a Load; raises on output it does not recognise."""
    latency = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)\s*$", out, re.MULTILINE))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return Load(
        connections=connections,
        requests=int(re.search(r"(\d+) requests in", out).group(1)),  # type: ignore[union-attr]
        rps=float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        p50_ms=_ms(latency["50"]),
        p90_ms=_ms(latency["90"]),
        p99_ms=_ms(latency["99"]),
        errors=(int(non_2xx.group(1)) if non_2xx else 0)
        + (sum(int(g) for g in socket.groups()) if socket else 0),
        raw=out,
        command=command,
    )
