"""What does the prediction log cost? The same deployment is served with logging off and on
(every answer logged, inputs and outputs included) and loaded with wrk; throughput and p99
of the two are compared. Rounds alternate off/on so machine noise spreads over both.

    .venv/bin/python -m bench.logging_impact [--connections 16] [--duration 15] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fixtures.models import breast_cancer, save_joblib, sklearn_pipeline
from tests.fixtures.server import LiveServer

from bench.wrk import Load, run

PAYLOADS = 1.0


def measure(folder: Path, *, logging: bool, connections: int, duration_s: int) -> Load:
    home = folder / f"home-{'on' if logging else 'off'}"
    server = LiveServer(home, env={"TURNOUT_LOG_PREDICTIONS": str(logging).lower()}).start()
    try:
        with server.client() as client:
            if not client.list_models():
                client.register("bc", save_joblib(sklearn_pipeline(), folder), flavor="sklearn")
                client.create_deployment("bc-prod", model="bc", version=1, log_payloads=PAYLOADS)
        row = breast_cancer()[0].iloc[0].tolist()
        body = {"inputs": [{"name": "input-0", "shape": [1, 30], "datatype": "FP64", "data": row}]}
        url = f"{server.url}/v2/models/bc-prod/infer"
        run(url, body, connections=connections, duration_s=3)  # warm up
        return run(url, body, connections=connections, duration_s=duration_s)
    finally:
        server.stop()


def logged_rows(folder: Path) -> int:
    import duckdb

    files = [str(p) for p in (folder / "home-on" / "artifacts" / "log").rglob("*.parquet")]
    if not files:
        return 0
    with duckdb.connect() as con:
        found = con.execute("select count(*) from read_parquet(?)", [files]).fetchone()
    return int(found[0]) if found else 0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--duration", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--payloads", type=float, default=1.0, help="share of requests logged with payloads"
    )
    args = parser.parse_args()
    global PAYLOADS
    PAYLOADS = args.payloads
    rounds: list[tuple[Load, Load]] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for _ in range(args.rounds):
            off = measure(folder, logging=False, connections=args.connections,
                          duration_s=args.duration)  # fmt: skip
            on = measure(folder, logging=True, connections=args.connections,
                         duration_s=args.duration)  # fmt: skip
            rounds.append((off, on))
        rows = logged_rows(folder)
    print(
        f"OIP one-row requests, wrk {args.connections} connections, {args.duration} s per run; "
        f"inputs and outputs logged for {args.payloads:.0%} of requests"
    )
    print("| round | logging | req/s | p50 ms | p99 ms | errors |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for i, (off, on) in enumerate(rounds, 1):
        for label, load in (("off", off), ("on", on)):
            print(f"| {i} | {label} | {load.rps:.0f} | {load.p50_ms:.2f} | {load.p99_ms:.2f} "
                  f"| {load.errors} |")  # fmt: skip
    rps_off = statistics.median(off.rps for off, _ in rounds)
    rps_on = statistics.median(on.rps for _, on in rounds)
    p99_off = statistics.median(off.p99_ms for off, _ in rounds)
    p99_on = statistics.median(on.p99_ms for _, on in rounds)
    print(
        f"\nmedian req/s: off {rps_off:.0f}, on {rps_on:.0f}: on/off {rps_on / rps_off:.3f} "
        f"(budget >= 0.95); median p99: off {p99_off:.2f} ms, on {p99_on:.2f} ms"
    )
    print(f"rows in the prediction log after the 'on' runs (warm-ups included): {rows}")


if __name__ == "__main__":
    main()
