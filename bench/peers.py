"""How each server in the suite is installed, configured and started (all on 127.0.0.1).

Each `start_*` returns a `Running`: the started process group, the URL wrk hits, the body it
sends, and the exact shell command, for the report.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.process import Server, free_port
from bench.workload import mlflow_body, oip_body
from turnout.client import Client

ROOT = Path(__file__).resolve().parents[1]
MAIN_BIN = Path(sys.executable).parent
MODEL = "bc"

MLSERVER_REQUIREMENTS = ["mlserver==1.7.1", "mlserver-sklearn==1.7.1", "uvloop==0.21.0"]
MLFLOW_REQUIREMENTS = ["mlflow>=3,<4"]


@dataclass
class Running:
    server: Server
    url: str
    body: object
    command: str
    config: dict[str, str] = field(default_factory=dict)

    def check(self) -> str:
        """One request before any load: a peer that answers wrongly fails here, not in wrk."""
        response = httpx.post(self.url, json=self.body, timeout=30)
        if response.status_code != 200:
            raise RuntimeError(f"check request got {response.status_code}: {response.text[:300]}")
        return response.text

    def stop(self) -> None:
        self.server.stop()


def _with_bin(venv_bin: Path) -> dict[str, str]:
    """PATH with the venv's bin first, as if activated (mlflow execs `uvicorn` by name)."""
    return {"PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}"}


def start_bare(*, model: Path, workers: int, log: Path) -> Running:
    port = free_port()
    command = [
        str(MAIN_BIN / "uvicorn"), "bench.bare_app:app", "--host", "127.0.0.1",
        "--port", str(port), "--workers", str(workers), "--http", "httptools",
        "--loop", "uvloop", "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    server = Server(
        command, ready_url=base + "/ready", log=log, env={"BENCH_MODEL": str(model)}, cwd=ROOT
    )
    server.start()
    shell = f"BENCH_MODEL={model} {server.shell_command}"
    return Running(server, f"{base}/v2/models/{MODEL}/infer", oip_body(), shell)


def start_turnout(*, home: Path, workers: int, log: Path) -> Running:
    port = free_port()
    command = [str(MAIN_BIN / "turnout"), "serve", "--port", str(port), "--workers", str(workers)]
    env = {"TURNOUT_HOME": str(home), "TURNOUT_HOST": "127.0.0.1"}
    base = f"http://127.0.0.1:{port}"
    server = Server(command, ready_url=base + "/v2/health/ready", log=log, env=env)
    server.env.pop("TURNOUT_TOKEN", None)
    server.env.pop("TURNOUT_URL", None)
    server.start()
    shell = f"TURNOUT_HOME={home} {server.shell_command}"
    return Running(server, f"{base}/v2/models/{MODEL}/infer", oip_body(), shell)


def turnout_client(running: Running, home: Path) -> Client:
    base = running.url.split("/v2/")[0]
    return Client(base, (home / "admin.token").read_text().strip())


def turnout_host(running: Running, home: Path) -> dict[str, Any]:
    """The node's model host as the admin endpoint `GET /api/v1/host` shows it."""
    base = running.url.split("/v2/")[0]
    token = (home / "admin.token").read_text().strip()
    response = httpx.get(
        f"{base}/api/v1/host", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    return dict(response.raise_for_status().json())


def host_note(status: dict[str, Any]) -> str:
    """Which runners hold each model, and how each is isolated, for the report."""
    models = "; ".join(
        f"{m['key']} on runner(s) {', '.join(map(str, m['runners'])) or 'none'} ({m['isolation']})"
        for m in status.get("models", [])
    )
    return f"`GET /api/v1/host` after the runs: {len(status.get('runners', []))} runners; {models}"


def turnout_setup(client: Client, models: list[Path]) -> None:
    """Three versions of `bc`; deployment `bc` serves version 1 alone."""
    for path in models:
        client.register(MODEL, path, flavor="sklearn")
    client.create_deployment(MODEL, model=MODEL, version=1)


def turnout_route(
    client: Client, *, challengers: dict[int, float], shadows: dict[int, float]
) -> None:
    """Replace the routing (clear, then set) and wait until the workers serve it."""
    applied = client.route(MODEL, challengers=challengers, shadows=shadows, clear=True)
    if not applied.get("acknowledged", True):
        time.sleep(1.0)  # workers re-read the routing table every 250 ms


def turnout_traffic(client: Client) -> dict[tuple[int, str], dict[str, int]]:
    """Per (version, role) counters summed over the live workers since they started."""
    rows = client.show_deployment(MODEL).get("traffic", [])
    keys = ("requests", "dropped", "errors")
    return {(t["version"], t["role"]): {k: int(t.get(k) or 0) for k in keys} for t in rows}


def traffic_note(
    before: dict[tuple[int, str], dict[str, int]], after: dict[tuple[int, str], dict[str, int]]
) -> str:
    """What each version did during the measured runs: requests, dropped copies, errors."""
    parts = []
    for (version, role), counts in sorted(after.items()):
        was = before.get((version, role), {})
        delta = {k: v - was.get(k, 0) if v >= was.get(k, 0) else v for k, v in counts.items()}
        parts.append(
            f"v{version} {role}: {delta['requests']} requests, "
            f"{delta['dropped']} dropped, {delta['errors']} errors"
        )
    return "gateway counters over the measured runs (warm-up included): " + "; ".join(parts)


def start_mlserver(
    *, venv: Path, model: Path, folder: Path, parallel_workers: int, batching: bool, log: Path
) -> Running:
    """MLServer with settings.json + <model>/model-settings.json written into `folder`."""
    ports = {"http_port": free_port(), "grpc_port": free_port(), "metrics_port": free_port()}
    settings = {"host": "127.0.0.1", **ports, "parallel_workers": parallel_workers, "debug": False}
    model_settings: dict[str, object] = {
        "name": MODEL,
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": str(model)},
    }
    if batching:
        model_settings.update(max_batch_size=64, max_batch_time=0.005)
    (folder / MODEL).mkdir(parents=True, exist_ok=True)
    (folder / "settings.json").write_text(json.dumps(settings, indent=2))
    (folder / MODEL / "model-settings.json").write_text(json.dumps(model_settings, indent=2))
    base = f"http://127.0.0.1:{ports['http_port']}"
    server = Server(
        [str(venv / "bin" / "mlserver"), "start", str(folder)],
        ready_url=f"{base}/v2/models/{MODEL}/ready",
        log=log,
        env=_with_bin(venv / "bin"),
    )
    server.start()
    config = {
        "settings.json": json.dumps(settings),
        "model-settings.json": json.dumps(model_settings),
    }
    url = f"{base}/v2/models/{MODEL}/infer"
    return Running(server, url, oip_body(), server.shell_command, config)


def start_mlflow(*, venv: Path, model_dir: Path, workers: int, log: Path) -> Running:
    port = free_port()
    command = [
        str(venv / "bin" / "mlflow"), "models", "serve", "-m", str(model_dir),
        "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "-w", str(workers),
    ]  # fmt: skip
    env = {**_with_bin(venv / "bin"), "UVICORN_ACCESS_LOG": "false"}
    base = f"http://127.0.0.1:{port}"
    server = Server(command, ready_url=base + "/ping", log=log, env=env)
    server.start()
    shell = f"UVICORN_ACCESS_LOG=false {server.shell_command}"
    return Running(server, f"{base}/invocations", mlflow_body(), shell)
