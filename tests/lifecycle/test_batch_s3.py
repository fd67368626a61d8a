"""Batch scoring from an S3 API (moto's server on loopback): an `s3://` input the operator
allows is scored like a local file; one outside the allowed prefixes is refused."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from tests.fixtures.models import breast_cancer, save_joblib, sklearn_pipeline
from tests.fixtures.s3 import S3Server
from tests.fixtures.server import LiveServer
from turnout.client import ApiError

pytestmark = [pytest.mark.server, pytest.mark.slow]


@pytest.fixture(scope="module")
def bucket(s3_server: S3Server) -> str:
    return s3_server.bucket()


@pytest.fixture(scope="module")
def server(
    s3_server: S3Server, bucket: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    base = tmp_path_factory.mktemp("batch-s3")
    live = LiveServer(
        base / "home",
        env={
            "TURNOUT_CONTROLLER_INTERVAL_MS": "200",
            "TURNOUT_S3_ENDPOINT_URL": s3_server.endpoint,
            "TURNOUT_DATA_URLS": f"s3://{bucket}/incoming",
        },
    ).start()
    folder = base / "model"
    folder.mkdir()
    with live.client() as client:
        client.register("scorer", save_joblib(sklearn_pipeline(), folder), flavor="sklearn")
        client.create_deployment("s3-prod", model="scorer", version=1)
    yield live
    live.stop()


def test_an_allowed_s3_input_is_scored_like_a_local_file(
    server: LiveServer, s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    features, _ = breast_cancer()
    rows = features.iloc[:120].reset_index(drop=True)
    for part, frame in enumerate((rows.iloc[:70], rows.iloc[70:])):
        s3_server.client().put_object(
            Bucket=bucket, Key=f"incoming/day/part-{part}.csv", Body=frame.to_csv(index=False)
        )
    with server.client() as client:
        job = client.batch("s3-prod", input=f"s3://{bucket}/incoming/day/", chunk_rows=50)
        deadline = time.monotonic() + 120
        while (job := client.job(int(job["id"])))["state"] not in ("succeeded", "failed"):
            assert time.monotonic() < deadline, job
            time.sleep(0.3)
        assert job["state"] == "succeeded", job
        client.download_batch_output(int(job["id"]), tmp_path / "scored.parquet")
    scored = pd.read_parquet(tmp_path / "scored.parquet")
    assert scored["prediction"].tolist() == sklearn_pipeline().predict(rows).tolist()
    assert len(scored) == 120


def test_an_s3_input_outside_the_allowed_prefixes_is_refused(
    server: LiveServer, bucket: str
) -> None:
    with server.client() as client, pytest.raises(ApiError, match="TURNOUT_DATA") as refused:
        client.batch("s3-prod", input=f"s3://{bucket}/elsewhere/data.csv")
    assert refused.value.status == 400
