"""Rows/s over each Open Inference Protocol transport: JSON HTTP, binary HTTP (the binary
tensor data extension) and gRPC, for turnout and MLServer in the same run.

One `turnout serve` (1 worker) and one MLServer (`parallel_workers` 0: inference in its
one process) serve the reference pipeline; each is called with the stock Triton clients and
their defaults (tritonclient.http with binary tensors, or with JSON data when
`binary_data=False`; tritonclient.grpc, raw tensors both ways), one request at a time over
one kept-alive connection, with 1-row and 1,000-row requests. Client time is part of every
number (encoding 30,000 floats as JSON is part of what JSON costs a caller). Cells run
interleaved, `--rounds` times, and the best round of each cell is kept: other work on a
shared machine only ever slows a cell down, so the best round is the one it disturbed least
(the cores other work used are reported, at most and per cell in protocols.json).

    .venv/bin/python -m bench.protocols                 # ~2 minutes (bench/run.sh runs it)
    .venv/bin/python -m bench.protocols --duration 2 --rounds 1
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from tests.fixtures.models import breast_cancer, save_joblib, sklearn_pipeline

from bench import peers, venvs
from bench.process import Server, free_port
from bench.quiet import Meter
from bench.workload import make_in_venv
from turnout.client import Client

ROOT = Path(__file__).resolve().parents[1]
TRANSPORTS = ("json", "binary", "grpc")
SIZES = (1, 1000)
MODEL = peers.MODEL
BUDGET_RATIO = 5.0
"""DESIGN.md: binary HTTP and gRPC >= 5x JSON's rows/s on 1,000-row batches."""

Call = Callable[[np.ndarray], np.ndarray]


@dataclass
class Target:
    """One server under test, the clients that call it, and the cells it could not serve."""

    name: str
    server: Server
    http: str
    grpc: str
    command: str
    calls: dict[str, Call] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    """Transport -> why it has no column for this server."""


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.protocols", description=__doc__)
    parser.add_argument("--duration", type=float, default=2.0, help="seconds per cell")
    parser.add_argument("--warmup", type=float, default=0.5, help="seconds before each cell")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (best kept)")
    parser.add_argument("--results", type=Path, default=None, help="output folder")
    return parser.parse_args(argv)


def rows_of(size: int) -> np.ndarray:
    """`size` breast-cancer rows (repeated past the 569 the data set has), FP64."""
    features = breast_cancer()[0].to_numpy(dtype=np.float64)
    return np.resize(features, (size, features.shape[1]))


# -- clients ----------------------------------------------------------------------------------


def http_call(url: str, *, binary: bool) -> Call:
    client = triton_http.InferenceServerClient(url, network_timeout=120.0)

    def call(rows: np.ndarray) -> np.ndarray:
        tensor = triton_http.InferInput("input-0", list(rows.shape), "FP64")
        tensor.set_data_from_numpy(rows, binary_data=binary)
        output = triton_http.InferRequestedOutput("predict", binary_data=binary)
        result = client.infer(MODEL, [tensor], outputs=[output])
        return np.asarray(result.as_numpy("predict"))

    return call


def grpc_call(url: str) -> Call:
    client = triton_grpc.InferenceServerClient(url)

    def call(rows: np.ndarray) -> np.ndarray:
        tensor = triton_grpc.InferInput("input-0", list(rows.shape), "FP64")
        tensor.set_data_from_numpy(rows)
        output = triton_grpc.InferRequestedOutput("predict")
        result = client.infer(MODEL, [tensor], outputs=[output], client_timeout=120)
        return np.asarray(result.as_numpy("predict"))

    return call


def attach_clients(target: Target, expected: np.ndarray) -> None:
    """A client per transport, each checked once against the model's own labels for
    `rows_of(len(expected))`; a transport the server does not serve gets a reason instead."""
    makers: dict[str, Callable[[], Call]] = {
        "json": lambda: http_call(target.http, binary=False),
        "binary": lambda: http_call(target.http, binary=True),
        "grpc": lambda: grpc_call(target.grpc),
    }
    if target.name == "turnout" and "binary_tensor_data" not in extensions(target.http):
        target.skipped["binary"] = (
            "this turnout build does not serve binary tensor data over HTTP yet "
            "(no `binary_tensor_data` in its server metadata)"
        )
    sample = rows_of(len(expected))
    for transport, make in makers.items():
        if transport in target.skipped:
            continue
        try:
            call = make()
            got = call(sample)
        except Exception as exc:  # a peer that cannot serve a transport: report it
            target.skipped[transport] = f"the check request failed: {str(exc)[:200]}"
            continue
        if got.ravel().tolist() != expected.ravel().tolist():
            target.skipped[transport] = f"wrong answer: {got.ravel()[:5]}"
            continue
        target.calls[transport] = call


def extensions(http_url: str) -> list[str]:
    client = triton_http.InferenceServerClient(http_url)
    try:
        return list(client.get_server_metadata().get("extensions", []))
    finally:
        client.close()


# -- servers ----------------------------------------------------------------------------------


def start_turnout(results: Path, model: Path, *, workers: int = 1) -> Target:
    home = results / "turnout-home"
    port, grpc_port = free_port(), free_port()
    command = [
        str(peers.MAIN_BIN / "turnout"), "serve", "--port", str(port),
        "--grpc-port", str(grpc_port), "--workers", str(workers),
    ]  # fmt: skip
    env = {"TURNOUT_HOME": str(home), "TURNOUT_HOST": "127.0.0.1"}
    server = Server(
        command,
        ready_url=f"http://127.0.0.1:{port}/v2/health/ready",
        log=results / "turnout.log",
        env=env,
    )
    server.env.pop("TURNOUT_TOKEN", None)
    server.env.pop("TURNOUT_URL", None)
    server.start()
    token = (home / "admin.token").read_text().strip()
    with Client(f"http://127.0.0.1:{port}", token) as client:
        client.register(MODEL, model, flavor="sklearn")
        client.create_deployment(MODEL, model=MODEL, version=1)
    return Target(
        "turnout",
        server,
        f"127.0.0.1:{port}",
        f"127.0.0.1:{grpc_port}",
        f"TURNOUT_HOME={home} {server.shell_command}",
    )


def start_mlserver(results: Path) -> Target:
    venv = venvs.ensure("mlserver", peers.MLSERVER_REQUIREMENTS, log=results / "venvs.log")
    model = make_in_venv(venv / "bin" / "python", "numpy-joblib", results / "mlserver.joblib")
    running = peers.start_mlserver(
        venv=venv,
        model=model,
        folder=results / "mlserver",
        parallel_workers=0,
        batching=False,
        log=results / "mlserver.log",
    )
    settings = json.loads(running.config["settings.json"])
    return Target(
        "mlserver",
        running.server,
        f"127.0.0.1:{settings['http_port']}",
        f"127.0.0.1:{settings['grpc_port']}",
        f"{running.server.shell_command}  # settings.json: {running.config['settings.json']}",
    )


# -- measuring --------------------------------------------------------------------------------


@dataclass
class Cell:
    target: str
    transport: str
    size: int
    rows_per_s: list[float] = field(default_factory=list)
    others_cores: list[float] = field(default_factory=list)

    @property
    def best(self) -> float:
        return max(self.rows_per_s)


def measure(call: Call, rows: np.ndarray, *, duration_s: float, warmup_s: float) -> float:
    """Rows answered per second by sequential calls for `duration_s`, after a warm-up."""
    until = time.perf_counter() + warmup_s
    while time.perf_counter() < until:
        call(rows)
    count = 0
    started = time.perf_counter()
    while (elapsed := time.perf_counter() - started) < duration_s:
        call(rows)
        count += 1
    return count * len(rows) / elapsed


def run(targets: list[Target], args: argparse.Namespace) -> list[Cell]:
    cells = {
        (t.name, transport, size): Cell(t.name, transport, size)
        for size in SIZES
        for transport in TRANSPORTS
        for t in targets
        if transport in t.calls
    }
    for round_ in range(args.rounds):
        for size in SIZES:
            rows = rows_of(size)
            for transport in TRANSPORTS:
                for target in targets if round_ % 2 == 0 else reversed(targets):
                    call = target.calls.get(transport)
                    if call is None:
                        continue
                    cell = cells[(target.name, transport, size)]
                    meter = Meter(target.server.process.pid if target.server.process else None)
                    rate = measure(call, rows, duration_s=args.duration, warmup_s=args.warmup)
                    cell.rows_per_s.append(rate)
                    cell.others_cores.append(meter.others_cores())
                    print(
                        f"round {round_ + 1} {target.name:8} {transport:6} {size:5} rows: "
                        f"{rate:10.0f} rows/s",
                        flush=True,
                    )
    return list(cells.values())


# -- report -----------------------------------------------------------------------------------


def _ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None or b == 0 else f"{a / b:.2f}x"


def report(cells: list[Cell], targets: list[Target], args: argparse.Namespace) -> str:
    found = {(c.target, c.transport, c.size): c.best for c in cells}
    lines = [
        "# OIP transports: rows/s (best of rounds; one sequential client, client time included)",
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {args.rounds} rounds of {args.duration:g} s "
        "per cell after a warm-up, cells interleaved.",
        "",
        "| server | rows/request | JSON HTTP | binary HTTP | gRPC | binary / JSON | gRPC / JSON |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for target in targets:
        for size in SIZES:
            rates = {t: found.get((target.name, t, size)) for t in TRANSPORTS}
            shown = [f"{rates[t]:,.0f}" if rates[t] is not None else "n/a" for t in TRANSPORTS]
            lines.append(
                f"| {target.name} | {size:,} | {' | '.join(shown)} | "
                f"{_ratio(rates['binary'], rates['json'])} | "
                f"{_ratio(rates['grpc'], rates['json'])} |"
            )
    lines += ["", "turnout / MLServer, same transport and size:", ""]
    lines += ["| rows/request | JSON HTTP | binary HTTP | gRPC |", "| ---: | ---: | ---: | ---: |"]
    for size in SIZES:
        ratios = [
            _ratio(found.get(("turnout", t, size)), found.get(("mlserver", t, size)))
            for t in TRANSPORTS
        ]
        lines.append(f"| {size:,} | {' | '.join(ratios)} |")
    lines += ["", f"Budget (DESIGN.md section 4): binary HTTP and gRPC >= {BUDGET_RATIO:g}x "
              "JSON's rows/s on 1,000-row requests, for turnout:"]  # fmt: skip
    for transport in ("binary", "grpc"):
        fast, slow = found.get(("turnout", transport, 1000)), found.get(("turnout", "json", 1000))
        if fast is None or slow is None:
            lines.append(f"- {transport}: not measured")
            continue
        verdict = "met" if fast / slow >= BUDGET_RATIO else "NOT met"
        lines.append(f"- {transport}: {fast / slow:.2f}x, {verdict}")
    lines += ["", "Not measured:"]
    skipped = [f"- {t.name} {tr}: {why}" for t in targets for tr, why in t.skipped.items()]
    lines += skipped or ["- nothing"]
    busiest = max((max(c.others_cores) for c in cells if c.others_cores), default=0.0)
    lines += ["", f"Other work on the machine used at most {busiest:.2f} cores during a cell.",
              "", "Servers:", *[f"- {t.name}: `{t.command}`" for t in targets]]  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    results = args.results or ROOT / "bench" / "results" / f"{stamp}-protocols"
    results.mkdir(parents=True, exist_ok=True)
    pipeline = sklearn_pipeline()  # the suite's reference model, fitted on named columns
    expected = np.asarray(pipeline.predict(breast_cancer()[0].iloc[:7]))
    targets: list[Target] = []
    try:
        targets.append(start_turnout(results, save_joblib(pipeline, results)))
        targets.append(start_mlserver(results))
        for target in targets:
            attach_clients(target, expected)
        cells = run(targets, args)
    finally:
        for target in targets:
            target.server.stop()
    text = report(cells, targets, args)
    (results / "protocols.md").write_text(text)
    (results / "protocols.json").write_text(
        json.dumps([c.__dict__ for c in cells], indent=2, default=str)
    )
    print(text)
    print(f"written to {results / 'protocols.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
