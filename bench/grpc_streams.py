"""OIP gRPC under concurrent load: routed turnout against MLServer's gRPC, 16 streams.

A Python gRPC client cannot load a server harder than it loads the 2 cores it shares with
it, so the load comes from h2load (Debian's nghttp2-client, C): one serialized
`ModelInferRequest` of one row (raw FP64 contents, as tritonclient.grpc sends it), framed as
gRPC does, posted over HTTP/2 on 4 connections of 4 concurrent streams each. Each server's
answer to that very request is checked once with a real gRPC call first (h2load counts HTTP
statuses, and gRPC reports failures in trailers).

turnout serves the suite's routed configuration (champion, 10% challenger, 100% shadow,
prediction log on), 1 worker; MLServer 1.7.1 `parallel_workers` 0, no adaptive batching.
Rounds alternate; the best round of each server is kept (other work only slows a run).
The budget is judged at 1 worker; `--workers N` measures more workers (each binds the gRPC
port with SO_REUSEPORT) and reports that run on its own, without a verdict.

    .venv/bin/python -m bench.grpc_streams                 # ~1 minute (bench/run.sh runs it)
    .venv/bin/python -m bench.grpc_streams --workers 2     # the same load on 2 workers
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import grpc
import numpy as np

from bench import peers, protocols
from bench.protocols import Target
from bench.workload import reference_row, turnout_models
from turnout.client import Client
from turnout.gateway.grpc import grpc_predict_v2_pb2 as pb

ROOT = Path(__file__).resolve().parents[1]
METHOD = "/inference.GRPCInferenceService/ModelInfer"
CONNECTIONS, STREAMS = 4, 4
BUDGET_RATIO = 3.0
"""Issue budget: routed turnout over gRPC at 16 concurrent streams >= 3x MLServer's gRPC."""


def request_body() -> bytes:
    """One gRPC message: a compression flag, a 4-byte length, the serialized request."""
    _, row = reference_row()
    tensor = pb.ModelInferRequest.InferInputTensor(
        name="input-0", datatype="FP64", shape=[1, len(row)]
    )
    message = pb.ModelInferRequest(
        model_name=peers.MODEL,
        inputs=[tensor],
        outputs=[pb.ModelInferRequest.InferRequestedOutputTensor(name="predict")],
        raw_input_contents=[np.asarray([row], dtype="<f8").tobytes()],
    ).SerializeToString()
    return b"\x00" + len(message).to_bytes(4, "big") + message


def check(address: str, body: bytes) -> None:
    """The server answers this exact request with a prediction (a failure raises)."""
    with grpc.insecure_channel(address) as channel:
        call = channel.unary_unary(METHOD)
        reply = pb.ModelInferResponse.FromString(call(body[5:], timeout=60))
    if not reply.outputs:
        raise RuntimeError(f"{address} answered without outputs")


def h2load(address: str, body: Path, duration_s: int, warmup_s: int) -> tuple[float, int, str]:
    """Requests/s and failed requests of one h2load run against `address`."""
    command = [
        shutil.which("h2load") or "h2load", "-c", str(CONNECTIONS), "-m", str(STREAMS),
        "-D", str(duration_s), "--warm-up-time", str(warmup_s),
        "-H", "content-type: application/grpc", "-H", "te: trailers",
        "-d", str(body), f"http://{address}{METHOD}",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=duration_s + 120)
    rate = re.search(r"finished in .*?, ([\d.]+) req/s", done.stdout)
    counts = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed",
                       done.stdout)  # fmt: skip
    if done.returncode != 0 or rate is None or counts is None:
        raise RuntimeError(f"h2load failed: {done.stdout[-2000:]} {done.stderr[-2000:]}")
    return float(rate.group(1)), int(counts.group(2)), done.stdout


def start_turnout(results: Path, workers: int) -> Target:
    """turnout serving the suite's routed configuration."""
    models = turnout_models(results / "models")
    target = protocols.start_turnout(results, models[0], workers=workers)
    token = (results / "turnout-home" / "admin.token").read_text().strip()
    with Client(f"http://{target.http}", token) as client:
        for path in models[1:]:
            client.register(peers.MODEL, path, flavor="sklearn")
        client.route(peers.MODEL, challengers={2: 10}, shadows={3: 100}, clear=True)
    time.sleep(1.0)  # workers re-read the routing table every 250 ms
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.grpc_streams", description=__doc__)
    parser.add_argument("--duration", type=int, default=8, help="seconds per measured run")
    parser.add_argument("--warmup", type=int, default=2, help="seconds before measuring")
    parser.add_argument("--rounds", type=int, default=2, help="runs per server, alternated")
    parser.add_argument("--results", type=Path, default=None)
    parser.add_argument(
        "--workers", type=int, default=1, help="turnout workers (the budget is judged at 1)"
    )
    args = parser.parse_args(argv)
    if shutil.which("h2load") is None:
        print("h2load is missing: apt-get install nghttp2-client", file=sys.stderr)
        return 1
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    results = args.results or ROOT / "bench" / "results" / f"{stamp}-grpc-streams"
    results.mkdir(parents=True, exist_ok=True)
    targets: list[Target] = []
    best: dict[str, tuple[float, int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        body = Path(tmp) / "request.bin"
        body.write_bytes(request_body())
        try:
            targets = [start_turnout(results, args.workers), protocols.start_mlserver(results)]
            for target in targets:
                check(target.grpc, body.read_bytes())
            for round_ in range(args.rounds):
                for target in targets if round_ % 2 == 0 else list(reversed(targets)):
                    rate, failed, raw = h2load(target.grpc, body, args.duration, args.warmup)
                    (results / f"{target.name}-r{round_ + 1}.txt").write_text(raw)
                    print(f"round {round_ + 1} {target.name:8} {rate:10.0f} req/s, "
                          f"{failed} failed", flush=True)  # fmt: skip
                    if target.name not in best or rate > best[target.name][0]:
                        best[target.name] = (rate, failed)
        finally:
            for target in targets:
                target.server.stop()
    ours, theirs = best["turnout"], best["mlserver"]
    ratio = ours[0] / theirs[0]
    if args.workers == 1:
        verdict = f"budget >= {BUDGET_RATIO:g}x: {'met' if ratio >= BUDGET_RATIO else 'NOT met'}"
    else:
        verdict = f"{args.workers} workers: the budget is judged at 1 worker, not by this run"
    workers = f"{args.workers} worker{'s' if args.workers > 1 else ''}"
    text = (
        f"# OIP gRPC, {CONNECTIONS * STREAMS} concurrent streams (h2load, "
        f"{CONNECTIONS} connections x {STREAMS} streams), 1-row requests\n\n"
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; best of {args.rounds} alternated runs of "
        f"{args.duration} s after {args.warmup} s of warm-up.\n\n"
        "| server | req/s | failed |\n| --- | ---: | ---: |\n"
        f"| turnout routed (champion + 10% challenger + 100% shadow, log on), {workers} | "
        f"{ours[0]:,.0f} | {ours[1]} |\n"
        f"| MLServer 1.7.1, parallel_workers 0 | {theirs[0]:,.0f} | {theirs[1]} |\n\n"
        f"turnout / MLServer: {ratio:.2f}x ({verdict}).\n"
    )
    (results / "grpc-streams.md").write_text(text)
    print(text)
    print(f"written to {results / 'grpc-streams.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
