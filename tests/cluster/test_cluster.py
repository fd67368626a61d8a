"""Several nodes as one system: three `turnout serve` nodes on one PostgreSQL and one S3
bucket (artifacts and the prediction log), behind HAProxy, under load."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.fixtures.cluster import Cluster, start_cluster
from tests.fixtures.hosting import ROWS, descendants, small_model
from tests.fixtures.load import finish, post_script, start_wrk
from tests.fixtures.routing_models import ROW, constant_model
from tests.fixtures.s3 import S3Server
from tests.fixtures.traffic import Traffic

pytestmark = [pytest.mark.server, pytest.mark.slow, pytest.mark.postgres]

PLAN = """
warmup:
  min_requests: 40
  timeout_s: 120
challenge:
  steps: [50]
  metric: error_rate
  margin: -0.01
  min_samples: 150
  step_timeout_s: 120
bake:
  duration_s: 3
"""


def predict(url: str) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/deployments/d/predict", json={"instances": ROWS.tolist()}, timeout=30
    )


def answered(cluster: Cluster) -> int:
    """Requests the live workers of every node report having answered (heartbeats)."""
    with cluster.nodes[0].client() as client:
        return sum(int(t["requests"]) for t in client.show_deployment("d")["traffic"])


def under_load(cluster: Cluster) -> None:
    """Return once wrk's requests are reaching the nodes (their counters moved)."""
    before = answered(cluster)
    cluster.wait_until(lambda: answered(cluster) > before + 100, "the load to arrive")


def test_nodes_behind_a_balancer_serve_switch_and_drain_without_failing_a_request(
    pg_url: str, s3_server: S3Server, tmp_path: Path
) -> None:
    cluster = start_cluster(tmp_path, pg_url=pg_url, s3=s3_server)
    try:
        first, second = (small_model(tmp_path / "models", seed) for seed in (1, 2))
        with cluster.nodes[0].client() as client:  # registered through one node only
            client.register("m", first[0], flavor="sklearn")
            client.register("m", second[0], flavor="sklearn")
            client.create_deployment("d", model="m", version=1)
        for url in [cluster.url] + [node.url for node in cluster.nodes]:
            reply = predict(url)
            assert reply.status_code == 200, reply.text
            assert reply.json()["predictions"] == first[1].tolist()

        script = post_script(tmp_path, {"instances": ROWS.tolist()})
        load = start_wrk(f"{cluster.url}/v1/deployments/d/predict", script,
                         connections=8, duration_s=8)  # fmt: skip
        under_load(cluster)
        with cluster.nodes[1].client() as client:  # promoted through another node
            applied = client.promote("d", version=2)
        switched = finish(load)
        assert switched.requests > 0
        assert switched.failed == 0, switched.output
        assert applied["acknowledged"], applied
        for node in cluster.nodes:  # every node answers with the new champion
            assert predict(node.url).json()["predictions"] == second[1].tolist()

        load = start_wrk(f"{cluster.url}/v1/deployments/d/predict", script,
                         connections=8, duration_s=8)  # fmt: skip
        under_load(cluster)
        leaving = cluster.nodes[2]
        assert leaving.process is not None
        os.killpg(leaving.process.pid, signal.SIGTERM)
        drained = finish(load)
        assert drained.requests > 0
        assert drained.failed == 0, drained.output
        # it stopped by itself after draining (uvicorn ends with the signal it was sent)
        assert leaving.process.wait(timeout=30) in (0, -signal.SIGTERM)

        def counted(node_index: int) -> int:
            with cluster.nodes[node_index].client() as client:
                groups = client.status("d", window="1h")["groups"]
            return sum(int(g["requests"]) for g in groups)

        # both remaining nodes read every node's log, the stopped one's included
        cluster.wait_until(lambda: counted(0) == counted(1) > 0, "status to agree")
    finally:
        cluster.stop()


def leader_pid(pg_url: str) -> int | None:
    engine = create_engine(pg_url)
    try:
        with engine.connect() as conn:
            holder = conn.execute(
                text("SELECT holder FROM leases WHERE name = 'controller' AND expires_at > now()")
            ).scalar()
    finally:
        engine.dispose()
    return int(str(holder).split(":")[1]) if holder else None


def node_of(cluster: Cluster, pid: int) -> int:
    for i, node in enumerate(cluster.nodes):
        assert node.process is not None
        tree = {node.process.pid} | {p for p, _ in descendants(node.process.pid)}
        if pid in tree:
            return i
    raise AssertionError(f"no node runs process {pid}")


def test_a_rollout_finishes_under_a_new_leader_when_the_leading_node_is_killed(
    pg_url: str, s3_server: S3Server, tmp_path: Path
) -> None:
    cluster = start_cluster(tmp_path, pg_url=pg_url, s3=s3_server)
    try:
        with cluster.nodes[0].client() as client:
            for value in (1, 2):
                client.register("c", constant_model(tmp_path / f"v{value}", value),
                                flavor="python")  # fmt: skip
            client.create_deployment("d", model="c", version=1)
        cluster.wait_until(lambda: leader_pid(pg_url) is not None, "a controller to lead")
        with Traffic(cluster.url, "d", [ROW]) as traffic:
            with cluster.nodes[0].client() as client:
                client.start_rollout("d", version=2, plan=PLAN)
            killed = node_of(cluster, leader_pid(pg_url) or 0)
            victim = cluster.nodes[killed]
            assert victim.process is not None
            os.killpg(victim.process.pid, signal.SIGKILL)  # no goodbye: the lease must lapse
            victim.process.wait()
            survivor = cluster.nodes[(killed + 1) % len(cluster.nodes)]
            status: dict[str, Any] = {}

            def finished() -> bool:
                nonlocal status
                with survivor.client() as client:
                    status = client.rollout_status("d")
                return status["state"] in {"succeeded", "failed", "rolled_back", "aborted"}

            cluster.wait_until(finished, "the rollout to finish", timeout_s=240)
        assert status["state"] == "succeeded", (status["step"], status["reason"])
        kinds = [e["kind"] for e in status["events"]]
        assert kinds.count("promoted") == 1  # never applied twice
        new_leader = leader_pid(pg_url)
        assert new_leader is not None
        assert node_of(cluster, new_leader) != killed
        with survivor.client() as client:
            assert client.show_deployment("d")["champion"] == 2
        # callers lost nothing the balancer could not route around
        assert traffic.sent > 0
    finally:
        cluster.stop()
