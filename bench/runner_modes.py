"""Isolated runner processes vs in-process threads, side by side in one run.

The reference model behind turnout with TURNOUT_RUNNER=process (default) and =thread,
one worker, wrk at 1, 16 and 64 connections, plus the latency of a hung champion with a
100 ms deadline answered by its failover.

    .venv/bin/python -m bench.runner_modes [--duration 8]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from tests.fixtures.models import breast_cancer, save_joblib, sklearn_pipeline
from tests.fixtures.server import LiveServer

from bench.wrk import Load, run

HUNG = """
import numpy as np
import time


class Model:
    n_features = 30

    def predict(self, X):
        if X[0][0] > 1000:
            time.sleep(3600)
        return np.zeros(len(X), dtype=np.int64)
"""


def measure(mode: str, folder: Path, duration: int) -> tuple[list[Load], list[float]]:
    (folder / "hung.py").write_text(HUNG)
    server = LiveServer(folder / mode, env={"TURNOUT_RUNNER": mode}).start()
    try:
        with server.client() as client:
            client.register("bc", save_joblib(sklearn_pipeline(), folder), flavor="sklearn")
            client.register("bc", folder / "hung.py", flavor="python")
            client.create_deployment("bc-prod", model="bc", version=1)
            client.create_deployment(
                "hung-prod", model="bc", version=2, timeout_ms=100, failover=1, fallback=0
            )
        row = breast_cancer()[0].iloc[0].tolist()
        body = {"inputs": [{"name": "input-0", "shape": [1, 30], "datatype": "FP64", "data": row}]}
        url = f"{server.url}/v2/models/bc-prod/infer"
        run(url, body, connections=16, duration_s=3)
        loads = [run(url, body, connections=c, duration_s=duration) for c in (1, 16, 64)]
        latencies = []
        with httpx.Client(base_url=server.url, timeout=10) as http:
            for _ in range(60):
                started = time.perf_counter()
                answer = http.post(
                    "/v1/deployments/hung-prod/predict", json={"instances": [[5000.0] * 30]}
                )
                latencies.append((time.perf_counter() - started) * 1000)
                assert answer.status_code == 200, answer.text
        return loads, latencies
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = {mode: measure(mode, Path(tmp), args.duration) for mode in ("process", "thread")}
    print(f"{'runner':8} {'conns':>5} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6}")
    for mode, (loads, _) in results.items():
        for load in loads:
            print(
                f"{mode:8} {load.connections:5} {load.rps:8.0f} "
                f"{load.p50_ms:7.2f} {load.p99_ms:7.2f} {load.errors:6}"
            )
    print("hung champion, deadline 100 ms, failover answers (60 sequential requests):")
    for mode, (_, latencies) in results.items():
        print(
            f"  {mode:8} p50 {np.percentile(latencies, 50):6.1f} ms  "
            f"p99 {np.percentile(latencies, 99):6.1f} ms  max {max(latencies):6.1f} ms"
        )


if __name__ == "__main__":
    main()
