"""Two `turnout serve` nodes on one database and one S3 bucket: what one registers, the other
serves; a node whose object store cannot be reached refuses to start, naming it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.fixtures.hosting import ROWS, small_model
from tests.fixtures.proxy import cuttable
from tests.fixtures.s3 import CREDENTIALS, S3Server
from tests.fixtures.server import LiveServer, free_port
from turnout.calls import ApiError

pytestmark = pytest.mark.server


def test_a_version_registered_through_one_node_is_served_by_another(
    s3_server: S3Server, tmp_path: Path
) -> None:
    bucket = s3_server.bucket()
    database = f"sqlite:///{tmp_path / 'shared.db'}"
    env = s3_server.env(bucket)
    first = LiveServer(tmp_path / "node-a", database_url=database, env=env).start()
    try:
        second = LiveServer(tmp_path / "node-b", database_url=database, env=env).start()
        try:
            path, expected = small_model(tmp_path / "models", 3)
            with first.client() as client:
                client.register("m", path, flavor="sklearn")
                client.create_deployment("d", model="m", version=1)
            listed = s3_server.client().list_objects_v2(Bucket=bucket, Prefix="artifacts/sha256/")
            assert listed["KeyCount"] >= 1  # the blobs went to the bucket, not a folder
            assert not (tmp_path / "node-a" / "artifacts" / "sha256").exists()
            reply = httpx.post(
                f"{second.url}/v1/deployments/d/predict",
                json={"instances": ROWS.tolist()},
                timeout=60,
            )
            assert reply.status_code == 200, reply.text
            assert reply.json()["predictions"] == expected.tolist()
        finally:
            second.stop()
    finally:
        first.stop()


def test_a_node_whose_object_store_is_unreachable_stops_naming_the_endpoint(
    tmp_path: Path,
) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    env = {
        **os.environ,
        **CREDENTIALS,
        "TURNOUT_HOME": str(tmp_path),
        "TURNOUT_ARTIFACT_ROOT": "s3://models/prod",
        "TURNOUT_S3_ENDPOINT_URL": endpoint,
    }
    result = subprocess.run(
        [sys.executable, "-m", "turnout", "serve", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert endpoint in result.stderr
    assert "Traceback" not in result.stderr
    assert CREDENTIALS["AWS_SECRET_ACCESS_KEY"] not in result.stderr


@pytest.mark.parametrize("shared", ["bucket", "folder"])
def test_nodes_sharing_a_log_see_each_others_traffic_and_actuals(
    s3_server: S3Server, tmp_path: Path, shared: str
) -> None:
    """With the log in the bucket (the default beside S3 artifacts) or in a shared folder
    (`TURNOUT_LOG_DIR`), status on any node counts every node's answers exactly, and an
    actual posted to one node grades an answer another node gave."""
    bucket = s3_server.bucket()
    env = s3_server.env(bucket)
    if shared == "folder":
        env["TURNOUT_LOG_DIR"] = str(tmp_path / "shared-log")
    database = f"sqlite:///{tmp_path / 'shared.db'}"
    nodes = [LiveServer(tmp_path / f"node-{name}", database_url=database, env=env) for name in "ab"]
    try:
        for node in nodes:
            node.start()
        path, _ = small_model(tmp_path / "models", 4)
        with nodes[0].client() as client:
            client.register("m", path, flavor="sklearn")
            client.create_deployment("d", model="m", version=1)
        answered: list[tuple[str, object]] = []
        for node, n in zip(nodes, (3, 5), strict=True):
            for _ in range(n):
                reply = httpx.post(
                    f"{node.url}/v1/deployments/d/predict",
                    json={"instances": ROWS.tolist()},
                    timeout=60,
                )
                assert reply.status_code == 200, reply.text
                body = reply.json()
                answered += zip(body["prediction_ids"], body["predictions"], strict=True)
        expected = 8 * len(ROWS)  # every row is one logged prediction
        for node in nodes:
            wait_for(lambda node=node: champion_requests(node) == expected, node, "requests")
        logged = s3_server.client().list_objects_v2(Bucket=bucket, Prefix="artifacts/log/")
        assert (logged["KeyCount"] > 0) == (shared == "bucket")

        graded = [{"prediction_id": pid, "actual": label} for pid, label in answered[-len(ROWS) :]]
        with nodes[0].client() as client:  # answers node b gave, graded through node a
            report = client.post_actuals("d", graded)
        assert report["accepted"] == len(ROWS), report
        wait_for(lambda: champion_actuals(nodes[1]) == len(ROWS), nodes[1], "actuals")
    finally:
        for node in nodes:
            node.stop()


def wait_for(check: Callable[[], bool], node: LiveServer, what: str) -> None:
    deadline = time.monotonic() + 90
    while not check():
        assert time.monotonic() < deadline, f"{node.url} never counted the expected {what}"
        time.sleep(0.5)


def champion_actuals(node: LiveServer) -> int:
    with node.client() as client:
        metrics = client.status("d", window="1h")
    return sum(int(g.get("actuals") or 0) for g in metrics["groups"] if g["role"] == "champion")


def champion_requests(node: LiveServer) -> int:
    with node.client() as client:
        metrics = client.status("d", window="1h")
    return sum(int(g["requests"]) for g in metrics["groups"] if g["role"] == "champion")


def test_an_object_store_outage_keeps_models_serving_and_loses_no_logged_answer(
    s3_server: S3Server, tmp_path: Path
) -> None:
    """The store goes away while a node serves: loaded models keep answering, a registration
    fails with 503 and leaves nothing behind, and the answers logged meanwhile wait on the
    node and reach the bucket once the store is back."""
    bucket = s3_server.bucket()
    with cuttable(s3_server.endpoint) as link:
        env = {**s3_server.env(bucket), "TURNOUT_S3_ENDPOINT_URL": link.url}
        node = LiveServer(tmp_path / "node", env=env).start()
        try:
            path, expected = small_model(tmp_path / "models", 3)
            with node.client() as client:
                client.register("m", path, flavor="sklearn")
                client.create_deployment("d", model="m", version=1)
            served = 0
            for attempt in range(5):  # the first loads the model; the store goes after it
                if attempt == 1:
                    link.cut()
                reply = httpx.post(
                    f"{node.url}/v1/deployments/d/predict",
                    json={"instances": ROWS.tolist()},
                    timeout=60,
                )
                assert reply.status_code == 200, reply.text
                assert reply.json()["predictions"] == expected.tolist()
                served += len(ROWS)
            with node.client() as client, pytest.raises(ApiError) as refused:
                client.register("m", path, flavor="sklearn")
            assert refused.value.status == 503
            assert link.url in str(refused.value)
            with node.client() as client:
                assert [v["version"] for v in client.show_model("m")["version_list"]] == [1]
                wait_for(lambda: champion_requests(node) == served, node, "local requests")

            link.restore()
            wait_for(lambda: logged_rows(s3_server, bucket) == served, node, "pushed rows")
        finally:
            node.stop()


def logged_rows(server: S3Server, bucket: str) -> int:
    """Prediction rows in the bucket's log (no compaction runs this fast: segments only)."""
    client = server.client()
    listed = client.list_objects_v2(Bucket=bucket, Prefix="artifacts/log/predictions/")
    total = 0
    for item in listed.get("Contents", []):
        body = client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
        total += pq.read_metadata(pa.BufferReader(body)).num_rows
    return total
