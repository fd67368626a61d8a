"""Blue-green promote and rollback under wrk load: failed requests and p99 during switches
versus steady state.

    .venv/bin/python -m bench.switch_under_load [--workers 1] [--connections 8]
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

from tests.fixtures.models import breast_cancer, save_joblib, sklearn_pipeline
from tests.fixtures.server import LiveServer

from bench.wrk import run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--duration", type=int, default=12)
    args = parser.parse_args()
    row = breast_cancer()[0].iloc[0].tolist()
    body = {"instances": [row]}
    with tempfile.TemporaryDirectory() as tmp:
        server = LiveServer(Path(tmp) / "home", workers=args.workers).start()
        try:
            with server.client() as client:
                for c in (1.0, 0.01):
                    client.register(
                        "bc", save_joblib(sklearn_pipeline(c), Path(tmp)), flavor="sklearn"
                    )
                client.create_deployment("bc-prod", model="bc", version=1)
                url = f"{server.url}/v1/deployments/bc-prod/predict"
                run(url, body, connections=args.connections, duration_s=3)
                steady = run(url, body, connections=args.connections, duration_s=args.duration)
                switches: list[str] = []

                def switch() -> None:
                    for _ in range(args.duration // 3):
                        time.sleep(1.5)
                        started = time.perf_counter()
                        promoted = client.promote("bc-prod", version=2)
                        switches.append(
                            f"promote {promoted['acknowledged']} "
                            f"{time.perf_counter() - started:.3f}s"
                        )
                        time.sleep(1.5)
                        started = time.perf_counter()
                        rolled = client.rollback("bc-prod")
                        switches.append(
                            f"rollback {rolled['acknowledged']} "
                            f"{time.perf_counter() - started:.3f}s"
                        )

                thread = threading.Thread(target=switch)
                thread.start()
                during = run(url, body, connections=args.connections, duration_s=args.duration)
                thread.join()
        finally:
            server.stop()
    print(f"{args.workers} worker(s), wrk {args.connections} connections, {args.duration}s per run")
    print(f"{'phase':10} {'requests':>9} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'failed':>7}")
    for name, load in (("steady", steady), ("switching", during)):
        print(
            f"{name:10} {load.requests:9} {load.rps:8.0f} "
            f"{load.p50_ms:7.2f} {load.p99_ms:7.2f} {load.errors:7}"
        )
    print(f"p99 during switches / steady: {during.p99_ms / steady.p99_ms:.2f} (budget <= 1.5)")
    print("switches (acknowledged, time to return):", "; ".join(switches))


if __name__ == "__main__":
    main()
