"""Does a slow shadow change the champion's latency? A shadow that sleeps 1 s per call is
added to a deployment under wrk load; the champion's p99 with and without it is compared.

    .venv/bin/python bench/shadow_impact.py [--connections 16] [--duration 15]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fixtures.models import breast_cancer, save_joblib, sklearn_pipeline
from tests.fixtures.server import LiveServer

from bench.wrk import run

SLEEPY = """
import time
import numpy as np


class Model:
    n_features = 30

    def predict(self, X):
        time.sleep(1.0)
        return np.zeros(len(X), dtype=np.int64)
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--duration", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    row = breast_cancer()[0].iloc[0].tolist()
    body = {"inputs": [{"name": "input-0", "shape": [1, 30], "datatype": "FP64", "data": row}]}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "sleepy.py").write_text(SLEEPY)
        server = LiveServer(folder / "home").start()
        try:
            with server.client() as client:
                client.register("bc", save_joblib(sklearn_pipeline(), folder), flavor="sklearn")
                client.register("bc", folder / "sleepy.py", flavor="python")
                client.create_deployment("bc-prod", model="bc", version=1)
                url = f"{server.url}/v2/models/bc-prod/infer"
                run(url, body, connections=args.connections, duration_s=3)  # warm up
                rows = []
                for i in range(args.rounds):  # alternate to spread machine noise over both
                    if i:
                        client.route("bc-prod", clear=True)
                    off = run(url, body, connections=args.connections, duration_s=args.duration)
                    client.route("bc-prod", shadows={2: 100})
                    on = run(url, body, connections=args.connections, duration_s=args.duration)
                    rows.append((off, on))
                time.sleep(1.5)
                shadow = [
                    t for t in client.show_deployment("bc-prod")["traffic"] if t["role"] == "shadow"
                ]
        finally:
            server.stop()
    print(
        f"champion under wrk, {args.connections} connections, {args.duration}s per run; "
        "shadow sleeps 1 s per call"
    )
    print(f"{'round':6} {'shadow':7} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for i, (off, on) in enumerate(rows, 1):
        for label, load in (("off", off), ("on", on)):
            print(
                f"{i:<6} {label:7} {load.rps:9.0f} "
                f"{load.p50_ms:8.2f} {load.p99_ms:8.2f} {load.errors:7}"
            )
    p99_off = statistics.median(off.p99_ms for off, _ in rows)
    p99_on = statistics.median(on.p99_ms for _, on in rows)
    print(
        f"median p99: off {p99_off:.2f} ms, on {p99_on:.2f} ms, "
        f"ratio on/off {p99_on / p99_off:.3f} (budget <= 1.10)"
    )
    if shadow:
        s = shadow[0]
        print(
            f"shadow: {s['requests']} calls run, {s['dropped']} copies dropped (counted), "
            f"{s['errors']} errors"
        )


if __name__ == "__main__":
    main()
