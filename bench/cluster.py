"""Several nodes as one system, measured: 1 and then 3 `turnout serve` nodes on one
PostgreSQL and one S3 API (moto's server, holding artifacts and the prediction log), behind
HAProxy, under wrk.

Reported: requests/s through the balancer with 1 node and with 3 nodes (on a 2-core machine
three nodes share the same cores, so this measures what the extra hops and processes cost,
not scaling), and failed requests while a version is promoted and rolled back, and while a
node is stopped with SIGTERM, all under load. Correctness under those events is also what
`tests/cluster` asserts; here they are timed and counted on the reference workload.

    .venv/bin/python -m bench.cluster            # ~2 minutes
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx
from tests.fixtures.cluster import Cluster, start_cluster
from tests.fixtures.s3 import S3Server, running_moto
from tests.pg import PostgresServer

from bench import peers, wrk
from bench.workload import oip_body, reference_row, turnout_models
from turnout.client import Client

ROOT = Path(__file__).resolve().parents[1]


def prepare(cluster: Cluster, folder: Path) -> str:
    """Three versions registered through node 0; the reference deployment serves v1."""
    with cluster.nodes[0].client() as client:
        for path in turnout_models(folder / "models"):
            client.register(peers.MODEL, path, flavor="sklearn")
        client.create_deployment(peers.MODEL, model=peers.MODEL, version=1)
    return f"{cluster.url}/v2/models/{peers.MODEL}/infer"


def during(url: str, seconds: int, event: threading.Thread, script: Path) -> wrk.Load:
    """A wrk run of `seconds` at 16 connections with `event` happening in its middle."""
    result: list[wrk.Load] = []
    load = threading.Thread(
        target=lambda: result.append(
            wrk.run(url, oip_body(), connections=16, duration_s=seconds, script=script)
        )
    )
    load.start()
    time.sleep(seconds / 3)
    event.start()
    event.join()
    load.join()
    return result[0]


def shared_status(cluster: Cluster, requests: int = 2000) -> str:
    """`requests` 1-row predictions to a fresh deployment through the balancer, then how long
    until `status` on every node counts exactly that many (each node logs its own answers
    and reads the others' from the bucket)."""
    with cluster.nodes[0].client() as client:
        client.create_deployment("counted", model=peers.MODEL, version=1)
    body = {"instances": [reference_row()[1]]}
    with httpx.Client(base_url=cluster.url, timeout=30) as http:

        def send(_: int) -> int:
            return http.post("/v1/deployments/counted/predict", json=body).status_code

        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(send, range(requests)))
    sent = time.monotonic()
    ok = statuses.count(200)
    counts: list[int] = []
    while time.monotonic() - sent < 120:
        counts = []
        for node in cluster.nodes:
            with node.client() as client:
                groups = client.status("counted", window="1h")["groups"]
            counts.append(sum(int(g["requests"]) for g in groups))
        if counts == [ok] * len(cluster.nodes):
            break
        time.sleep(0.25)
    waited = time.monotonic() - sent
    verdict = "exact on every node" if counts == [ok] * len(cluster.nodes) else "NOT EXACT"
    return (
        f"Status after {ok:,} answered requests through the balancer: {counts} on the "
        f"{len(counts)} nodes, {verdict}, {waited:.1f} s after the last answer."
    )


def row(nodes: int, what: str, load: wrk.Load) -> str:
    return f"| {nodes} | {what} | {load.rps:,.0f} | {load.p99_ms:.2f} | {load.errors} |"


def switch(client: Client) -> None:
    client.promote(peers.MODEL, version=2)
    client.rollback(peers.MODEL)


def measure(
    nodes: int,
    folder: Path,
    pg: PostgresServer,
    s3: S3Server,
    args: argparse.Namespace,
    notes: list[str],
) -> list[str]:
    home = folder / f"{nodes}-nodes"
    database = pg.create_database(f"b_{uuid.uuid4().hex}")
    cluster = start_cluster(home, pg_url=database, s3=s3, nodes=nodes)
    script = folder / f"post-{nodes}.lua"
    try:
        url = prepare(cluster, home)
        wrk.run(url, oip_body(), connections=16, duration_s=args.warmup, script=script)
        steady = wrk.run(url, oip_body(), connections=16, duration_s=args.duration, script=script)
        lines = [row(nodes, "steady", steady)]
        if nodes > 1:
            notes.append(shared_status(cluster))
            with Client(cluster.nodes[1].url, cluster.nodes[1].token) as client:
                event = threading.Thread(target=switch, args=(client,))
                switched = during(url, args.duration, event, script)
            lines.append(row(nodes, "promote + rollback", switched))
            leaving = cluster.nodes[-1]
            assert leaving.process is not None
            stop = threading.Thread(target=os.killpg, args=(leaving.process.pid, signal.SIGTERM))
            lines.append(row(nodes, "one node SIGTERMed", during(url, args.duration, stop, script)))
        return lines
    finally:
        cluster.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cluster", description=__doc__)
    parser.add_argument("--duration", type=int, default=12, help="seconds per measured run")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of wrk before measuring")
    args = parser.parse_args(argv)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    results = ROOT / "bench" / "results" / f"{stamp}-cluster"
    results.mkdir(parents=True, exist_ok=True)
    rows: list[str] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="turnout-cluster-") as tmp:
        folder = Path(tmp)
        pg = PostgresServer().start()
        try:
            with running_moto(folder) as s3:
                for nodes in (1, 3):
                    rows += measure(nodes, folder, pg, s3, args, notes)
        finally:
            pg.stop()
    text = "\n".join([
        "# Several nodes behind HAProxy (one PostgreSQL, one S3 API holding artifacts and the log)",
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; wrk, 16 connections, {args.duration} s a run, "
        "1-row OIP requests to the reference deployment, 1 worker a node, on this machine's "
        "2 cores (more nodes here share the cores: this is overhead, not scaling).",
        "",
        "| nodes | during | req/s | p99 ms | failed |",
        "| ---: | --- | ---: | ---: | ---: |",
        *rows,
        "",
        *notes,
        "",
    ])  # fmt: skip
    (results / "cluster.md").write_text(text)
    print(text)
    print(f"written to {results / 'cluster.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
