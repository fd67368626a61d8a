"""One-row predict latency: the model called directly vs through the turnout gateway.

Starts `turnout serve` in a temporary home, registers the reference model (StandardScaler +
LogisticRegression on the breast-cancer data), and times sequential one-row requests over a
keep-alive connection with the native API and OIP. Prints a table of p50/p99 in ms.

    .venv/bin/python bench/one_row_latency.py [--requests 2000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fixtures.models import breast_cancer, save_joblib, sklearn_pipeline
from tests.fixtures.server import LiveServer


def percentiles(samples: list[float]) -> tuple[float, float]:
    values = np.array(samples) * 1000
    return float(np.percentile(values, 50)), float(np.percentile(values, 99))


def time_calls(call, n: int) -> list[float]:  # type: ignore[no-untyped-def]
    for _ in range(min(200, n)):
        call()
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    features, _ = breast_cancer()
    row_frame = features.iloc[:1]
    row = row_frame.to_numpy().tolist()
    pipeline = sklearn_pipeline()
    results = {
        "direct predict (DataFrame row)": time_calls(
            lambda: pipeline.predict(row_frame), args.requests
        ),
        "direct predict + predict_proba": time_calls(
            lambda: (pipeline.predict(row_frame), pipeline.predict_proba(row_frame)), args.requests
        ),
    }
    with tempfile.TemporaryDirectory() as tmp:
        server = LiveServer(Path(tmp) / "home").start()
        try:
            with server.client() as client:
                client.register("bc", save_joblib(pipeline, Path(tmp)), flavor="sklearn")
                client.create_deployment("bc-prod", model="bc", version=1)
            with httpx.Client(base_url=server.url) as http:
                native = {"instances": row}
                oip = {
                    "inputs": [
                        {"name": "input-0", "shape": [1, 30], "datatype": "FP64", "data": row[0]}
                    ]
                }
                results["gateway native /v1 (HTTP round trip)"] = time_calls(
                    lambda: http.post("/v1/deployments/bc-prod/predict", json=native), args.requests
                )
                results["gateway OIP /v2 infer (HTTP round trip)"] = time_calls(
                    lambda: http.post("/v2/models/bc-prod/infer", json=oip), args.requests
                )
                results["gateway /v2/health/live (HTTP floor)"] = time_calls(
                    lambda: http.get("/v2/health/live"), args.requests
                )
        finally:
            server.stop()
    print(f"{'path':45} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8}")
    for name, samples in results.items():
        p50, p99 = percentiles(samples)
        print(f"{name:45} {p50:8.3f} {p99:8.3f} {statistics.mean(samples) * 1000:8.3f}")


if __name__ == "__main__":
    main()
