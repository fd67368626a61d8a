"""Batch scoring in a real server: a job scores the caller's file in chunks with the
deployment's model, writes Parquet with the input's columns, predictions and prediction ids,
logs the rows with role `batch` so actuals grade them, and resumes after being killed
without scoring or logging any row twice."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow.parquet as pq
import pytest

from tests.fixtures.models import breast_cancer, save_joblib, sklearn_pipeline
from tests.fixtures.server import LiveServer
from turnout.aclient import AsyncClient
from turnout.calls import ApiError
from turnout.client import Client
from turnout.errors import Conflict
from turnout.lifecycle.batch import chunks, stream_output

FINISHED = ("succeeded", "failed", "cancelled")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    base = tmp_path_factory.mktemp("batch")
    live = LiveServer(
        base / "home",
        env={
            "TURNOUT_CONTROLLER_INTERVAL_MS": "200",
            "TURNOUT_LOG_FLUSH_MS": "200",
            "TURNOUT_LOG_DIR": str(base / "log"),
        },
    ).start()
    model = sklearn_pipeline()
    folder = base / "model"
    folder.mkdir()
    with live.client() as client:
        client.register("scorer", save_joblib(model, folder), flavor="sklearn")
        for name in ("batch-prod", "resume-prod", "cancel-prod", "bad-prod"):
            client.create_deployment(name, model="scorer", version=1)
    yield live
    live.stop()


def turnout(server: LiveServer, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**server.env, "TURNOUT_TOKEN": server.token}
    return subprocess.run([sys.executable, "-m", "turnout", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=300, check=False)  # fmt: skip


def logged(server: LiveServer, deployment: str) -> pd.DataFrame:
    """Every row of the prediction log of `deployment` with role batch."""
    files = sorted((server.home.parent / "log" / "predictions").rglob("*.parquet"))
    frames = [pq.read_table(f).to_pandas() for f in files if not f.name.startswith(".")]
    rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if rows.empty:
        return rows
    return rows[(rows["deployment"] == deployment) & (rows["role"] == "batch")]


def customers(n: int) -> pd.DataFrame:
    """`n` rows of the reference data (repeated), with a passthrough column first."""
    features, _ = breast_cancer()
    rows = features.iloc[np.arange(n) % len(features)].reset_index(drop=True)
    return rows.assign(customer=[f"c{i}" for i in range(n)])[["customer", *features.columns]]


def wait_for(client: Client, job_id: int, timeout_s: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = client.job(job_id)
        if job["state"] in FINISHED:
            return dict(job)
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish")


@pytest.mark.server
def test_scoring_a_relative_csv_gives_the_models_answers_and_actuals_grade_them(
    server: LiveServer, tmp_path: Path
) -> None:
    rows = customers(250)
    rows.to_csv(tmp_path / "customers.csv", index=False)

    done = turnout(server, "batch", "batch-prod", "--input", "customers.csv",
                   "--output", "scored.parquet", "--chunk-rows", "100", "--wait", "--json",
                   cwd=tmp_path)  # fmt: skip

    assert done.returncode == 0, done.stderr
    assert "uploaded 1 file(s)" in done.stderr
    job = orjson.loads(done.stdout)
    assert (job["kind"], job["state"], job["result"]["rows"]) == ("batch", "succeeded", 250)
    assert job["result"]["chunks"] == 3
    scored = pd.read_parquet(tmp_path / "scored.parquet")
    model = sklearn_pipeline()
    features = rows.drop(columns=["customer"])
    assert scored["customer"].tolist() == rows["customer"].tolist()
    pd.testing.assert_frame_equal(scored[features.columns], features)
    assert scored["prediction"].tolist() == model.predict(features).tolist()
    np.testing.assert_allclose(
        np.stack(list(scored["probabilities"])), model.predict_proba(features)
    )
    assert scored["prediction_id"].tolist() == [f"batch-{job['id']}-{i}" for i in range(250)]

    log = logged(server, "batch-prod")
    assert sorted(log["prediction_id"]) == sorted(scored["prediction_id"])
    assert set(log["version"]) == {1}

    truth = pd.DataFrame({"prediction_id": scored["prediction_id"], "actual": scored["prediction"]})
    truth.to_csv(tmp_path / "actuals.csv", index=False)
    graded = turnout(server, "actuals", "batch-prod", "actuals.csv", "--json", cwd=tmp_path)
    assert graded.returncode == 0, graded.stderr
    report = orjson.loads(graded.stdout)
    assert (report["accepted"], report["unknown"], report["rejected"]) == (250, [], [])
    with server.client() as client:
        groups = client.metrics("batch-prod")["groups"]
    batch = next(g for g in groups if g["role"] == "batch")
    assert (batch["requests"], batch["actuals"], batch["accuracy"]) == (250, 250, 1.0)

    listed = turnout(server, "jobs", "list", "--deployment", "batch-prod", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "batch" in listed.stdout
    again = turnout(server, "jobs", "output", str(job["id"]), "again.parquet", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "again.parquet"), scored)

    async def fetch() -> Path:
        async with AsyncClient(server.url, server.token) as client:
            return await client.download_batch_output(job["id"], tmp_path / "async.parquet")

    pd.testing.assert_frame_equal(pd.read_parquet(asyncio.run(fetch())), scored)


@pytest.mark.server
def test_a_killed_batch_job_resumes_and_every_row_is_scored_and_logged_once(
    server: LiveServer, tmp_path: Path
) -> None:
    rows = customers(3000)
    folder = server.home / "data" / "mine"
    folder.mkdir(parents=True, exist_ok=True)
    rows.to_parquet(folder / "customers.parquet", index=False)
    with server.client() as client:
        job = client.batch("resume-prod", input=str(folder), chunk_rows=20)
        deadline = time.monotonic() + 120
        while (seen := client.job(job["id"]))["progress"] < 0.05:
            assert seen["state"] not in FINISHED, seen
            assert time.monotonic() < deadline
            time.sleep(0.02)
        os.kill(int(seen["pid"]), signal.SIGKILL)
        killed = wait_for(client, job["id"])
    assert killed["state"] == "failed"
    assert "SIGKILL" in killed["message"]
    assert len(logged(server, "resume-prod")) < 3000

    done = turnout(server, "batch", "resume-prod", "--resume", str(job["id"]),
                   "--output", "scored.parquet", "--wait", cwd=tmp_path)  # fmt: skip

    assert done.returncode == 0, done.stderr
    assert "succeeded" in done.stdout
    with server.client() as client:
        resumed = client.jobs(deployment="resume-prod")[0]
    assert (resumed["trigger"], resumed["trigger_detail"]) == ("resume", {"resumes": job["id"]})
    assert resumed["result"]["resumed_chunks"] > 0
    assert resumed["result"]["output"] == str(server.home / "data" / "batch" / str(job["id"]))
    scored = pd.read_parquet(tmp_path / "scored.parquet")
    expected = [f"batch-{job['id']}-{i}" for i in range(3000)]
    assert scored["prediction_id"].tolist() == expected
    assert scored["customer"].tolist() == rows["customer"].tolist()
    features = rows.drop(columns=["customer"])
    assert scored["prediction"].tolist() == sklearn_pipeline().predict(features).tolist()
    log = logged(server, "resume-prod")
    assert sorted(log["prediction_id"]) == sorted(expected)


@pytest.mark.server
def test_a_cancelled_batch_job_stops_at_its_next_chunk(server: LiveServer, tmp_path: Path) -> None:
    folder = server.home / "data" / "cancel"
    folder.mkdir(parents=True, exist_ok=True)
    customers(3000).to_csv(folder / "customers.csv", index=False)
    with server.client() as client:
        job = client.batch("cancel-prod", input=str(folder / "customers.csv"), chunk_rows=20)
        deadline = time.monotonic() + 120
        while client.job(job["id"])["progress"] <= 0:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        cancelled = turnout(server, "jobs", "cancel", str(job["id"]), cwd=tmp_path)
        assert cancelled.returncode == 0, cancelled.stderr
        ended = wait_for(client, job["id"])
        assert (ended["state"], ended["message"]) == ("cancelled", "cancelled by request")
        with pytest.raises(ApiError, match="its output is ready once it succeeded"):
            client.download_batch_output(job["id"], tmp_path / "none.parquet")
    parts = list((server.home / "data" / "batch" / str(job["id"])).glob("part-*.parquet"))
    assert 0 < len(parts) < 150
    # a stop between a chunk's log file and its part file leaves that chunk logged (a resume
    # replaces the file), never a part without its log
    assert 20 * len(parts) <= len(logged(server, "cancel-prod")) <= 20 * (len(parts) + 1)
    assert not (tmp_path / "none.parquet").exists()


@pytest.mark.server
def test_bad_input_is_refused_and_changes_nothing(server: LiveServer, tmp_path: Path) -> None:
    data = server.home / "data"
    data.mkdir(parents=True, exist_ok=True)
    rows = customers(20)
    rows.drop(columns=["mean radius"]).to_csv(data / "short.csv", index=False)
    rows.to_csv(tmp_path / "outside.csv", index=False)
    rows.to_csv(data / "fine.csv", index=False)
    outputs = sorted((data / "batch").glob("*")) if (data / "batch").exists() else []
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"input": str(data / "nothing.csv")}, 400, "does not exist"),
        ({"input": str(tmp_path / "outside.csv")}, 400, "not under a folder"),
        ({"input": str(data / "short.csv")}, 400, "lacks the model's input columns mean radius"),
        ({"input": str(data / "fine.csv"), "version": 99}, 404, "99"),
        ({"input": str(data / "fine.csv"), "chunk_rows": 0}, 422, "chunk_rows"),
    ]
    with server.client() as client:
        for body, status, message in cases:
            with pytest.raises(ApiError, match=message) as refused:
                client.batch("bad-prod", **body)
            assert refused.value.status == status, body
        assert client.jobs(deployment="bad-prod") == []
    assert (sorted((data / "batch").glob("*")) if (data / "batch").exists() else []) == outputs
    assert logged(server, "bad-prod").empty

    cli = turnout(server, "batch", "bad-prod", "--input", "missing.csv", "--output", "x.parquet",
                  cwd=tmp_path)  # fmt: skip
    assert cli.returncode != 0
    assert "no CSV or Parquet file" in cli.stderr


@pytest.mark.server
def test_a_viewer_cannot_start_a_batch_job(server: LiveServer) -> None:
    with server.client() as client:
        viewer = str(client.create_token("batch-viewer", "viewer")["token"])
    with Client(server.url, viewer) as client, pytest.raises(ApiError) as refused:
        client.batch("bad-prod", input=str(server.home / "data" / "fine.csv"))
    assert refused.value.status == 403


# -- chunks and the output, without a server ------------------------------------------------


def test_chunks_hold_the_same_rows_whatever_the_files_boundaries(tmp_path: Path) -> None:
    rows = customers(13)
    rows.iloc[:7].to_csv(tmp_path / "a.csv", index=False)
    rows.iloc[7:].to_parquet(tmp_path / "b.parquet", index=False)

    cut = list(chunks([tmp_path / "a.csv", tmp_path / "b.parquet"], 4))

    assert [len(c) for c in cut] == [4, 4, 4, 1]
    assert pd.concat(cut, ignore_index=True)["customer"].tolist() == rows["customer"].tolist()


def test_the_output_is_one_file_of_all_parts_with_their_types_widened(tmp_path: Path) -> None:
    pd.DataFrame({"x": [1, 2], "prediction": [0, 1]}).to_parquet(tmp_path / "p0.parquet")
    pd.DataFrame({"x": [2.5], "prediction": [1]}).to_parquet(tmp_path / "p1.parquet")
    parts = [tmp_path / "p0.parquet", tmp_path / "p1.parquet"]

    (tmp_path / "out.parquet").write_bytes(b"".join(stream_output(parts)))

    whole = pd.read_parquet(tmp_path / "out.parquet")
    assert whole["x"].tolist() == [1.0, 2.0, 2.5]
    assert whole["prediction"].tolist() == [0, 1, 1]
    pd.DataFrame({"x": ["text"], "prediction": [1]}).to_parquet(tmp_path / "p2.parquet")
    with pytest.raises(Conflict, match="disagree on a column's type"):
        stream_output([*parts, tmp_path / "p2.parquet"])
