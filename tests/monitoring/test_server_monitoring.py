"""The prediction log, actuals, metrics, drift and Prometheus through a real server.

Every number the server reports is recomputed here with scikit-learn from what the test sent
and what the model (loaded here, from the same file) answers.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import httpx
import numpy as np
import orjson
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)
from sklearn.pipeline import Pipeline

from tests.fixtures.fault_models import BENIGN_ROW, FAULTY_ROW, Fault, constant_model, faulty_model
from tests.fixtures.models import breast_cancer, save_joblib, sklearn_pipeline, training_csv
from tests.fixtures.server import LiveServer

pytestmark = pytest.mark.server

DEPLOYMENT = "bc-prod"
FLUSH_WAIT_S = 30.0
"""The prediction log is flushed about every half second; longer on a loaded machine."""


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Pipeline, Pipeline, Path]:
    folder = tmp_path_factory.mktemp("models")
    return sklearn_pipeline(1.0), sklearn_pipeline(0.001), folder


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, models: tuple[Pipeline, Pipeline, Path]
) -> Iterator[LiveServer]:
    champion, shadow, folder = models
    live = LiveServer(tmp_path_factory.mktemp("home"), env={"TURNOUT_LOG_FLUSH_MS": "200"}).start()
    try:
        data = training_csv(folder)
        with live.client() as client:
            client.register("bc", save_joblib(champion, folder, "one.joblib"), flavor="sklearn",
                            training_data=data, target="target")  # fmt: skip
            client.register("bc", save_joblib(shadow, folder, "two.joblib"), flavor="sklearn",
                            training_data=data, target="target")  # fmt: skip
            client.create_deployment(DEPLOYMENT, model="bc", version=1)
            client.route(DEPLOYMENT, shadows={2: 100})
        yield live
    finally:
        live.stop()


def send(server: LiveServer, rows: pd.DataFrame, deployment: str = DEPLOYMENT) -> list[str]:
    """One request per row, half native and half OIP (with the caller's own ids)."""
    ids = []
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for i, row in enumerate(rows.to_numpy().tolist()):
            if i % 2:
                r = http.post(f"/v1/deployments/{deployment}/predict", json={"instances": [row]})
                assert r.status_code == 200, r.text
                ids.append(r.json()["prediction_ids"][0])
            else:
                tensor = {"name": "x", "shape": [1, len(row)], "datatype": "FP64", "data": row}
                body = {"id": f"{deployment}-{time.time_ns()}-{i}", "inputs": [tensor]}
                r = http.post(f"/v2/models/{deployment}/infer", json=body)
                assert r.status_code == 200, r.text
                assert r.json()["id"] == body["id"]
                assert r.headers["x-turnout-prediction-id"] == body["id"]
                ids.append(body["id"])
    return ids


def test_actuals_grade_every_answer_exactly_as_scikit_learn_does(
    server: LiveServer, models: tuple[Pipeline, Pipeline, Path]
) -> None:
    champion, shadow, _ = models
    features, target = breast_cancer()
    rows = features.sample(160, random_state=11)
    truth = target.loc[rows.index].to_numpy()
    ids = send(server, rows)
    actuals = [{"prediction_id": i, "actual": int(y)} for i, y in zip(ids, truth, strict=True)]
    with server.client() as client:
        report = client.post_actuals(DEPLOYMENT, actuals)
        assert report["accepted"] == len(ids), report
        assert report["unknown"] == []
        assert report["rejected"] == []
        again = client.post_actuals(DEPLOYMENT, actuals)  # idempotent
        assert again["accepted"] == len(ids)
        assert again["replaced"] == len(ids)
        metrics = client.metrics(DEPLOYMENT, window="1h")
    groups = {(g["version"], g["role"]): g for g in metrics["groups"]}
    for (version, role), model in (((1, "champion"), champion), ((2, "shadow"), shadow)):
        group = groups[(version, role)]
        assert group["requests"] >= len(ids)
        performance = group["performance"]
        assert performance["n"] == len(ids)
        predicted = model.predict(rows)
        proba = model.predict_proba(rows)
        expected = {
            "accuracy": accuracy_score(truth, predicted),
            "precision": precision_score(truth, predicted, zero_division=0),
            "recall": recall_score(truth, predicted, zero_division=0),
            "f1": f1_score(truth, predicted, zero_division=0),
            "roc_auc": roc_auc_score(truth, proba[:, 1]),
            "log_loss": log_loss(truth, proba, labels=[0, 1]),
        }
        for name, value in expected.items():
            metric = performance[name]
            assert metric["value"] == pytest.approx(value, rel=1e-9, abs=1e-12), (role, name)
            assert metric["ci_low"] <= metric["value"] <= metric["ci_high"]


def test_bad_actuals_get_a_report_per_row_and_good_rows_are_kept(server: LiveServer) -> None:
    features, target = breast_cancer()
    rows = features.sample(4, random_state=5)
    ids = send(server, rows)
    body = [
        {"prediction_id": ids[0], "actual": int(target.loc[rows.index[0]])},
        {"prediction_id": ids[1], "actual": "maybe"},  # a label the model never produces
        {"prediction_id": ids[0], "actual": 1},  # duplicate in this request
        {"prediction_id": ids[2], "actual": [1]},  # not a scalar
        {"prediction_id": 7, "actual": 1},  # wrong type of id
        {"actual": 1},  # no id
        {"prediction_id": "never-issued", "actual": 1},
        {"prediction_id": ids[3], "actual": "1"},  # a CSV-style string of a class: fine
    ]
    with server.client() as client:
        report = client.post_actuals(DEPLOYMENT, body)
    assert report["accepted"] == 2
    assert report["unknown"] == ["never-issued"]
    rejected = {r["index"]: r["error"] for r in report["rejected"]}
    assert set(rejected) == {1, 2, 3, 4, 5}
    assert "maybe" in rejected[1]
    assert "duplicate" in rejected[2]
    with httpx.Client(base_url=server.url) as http:
        headers = {"authorization": f"Bearer {server.token}"}
        for payload in (b"{", b'{"rows": 1}', b"3"):
            r = http.post(f"/api/v1/deployments/{DEPLOYMENT}/actuals", content=payload,
                          headers={**headers, "content-type": "application/json"})  # fmt: skip
            assert r.status_code == 400, r.text
            assert "error" in r.json()
        r = http.post("/api/v1/deployments/nope/actuals", json=[], headers=headers)
        assert r.status_code == 404
        r = http.get(f"/api/v1/deployments/{DEPLOYMENT}/metrics?window=soon", headers=headers)
        assert r.status_code == 400
        assert "window" in r.json()["error"]


def test_actuals_cli_takes_csv_and_status_shows_accuracy(
    server: LiveServer, tmp_path: Path
) -> None:
    features, target = breast_cancer()
    rows = features.sample(40, random_state=8)
    ids = send(server, rows)
    csv = tmp_path / "actuals.csv"
    pd.DataFrame({"prediction_id": ids, "actual": target.loc[rows.index].to_numpy()}).to_csv(
        csv, index=False
    )
    env = {**server.env, "TURNOUT_TOKEN": server.token}
    done = subprocess.run(
        [sys.executable, "-m", "turnout", "actuals", DEPLOYMENT, str(csv), "--json"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert orjson.loads(done.stdout)["accepted"] == len(ids)
    status = subprocess.run(
        [sys.executable, "-m", "turnout", "status", DEPLOYMENT, "--window", "1h"],
        env={**env, "COLUMNS": "200"}, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert status.returncode == 0, status.stderr
    assert "champion" in status.stdout
    assert "acc " in status.stdout
    as_json = subprocess.run(
        [sys.executable, "-m", "turnout", "status", DEPLOYMENT, "--json"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert orjson.loads(as_json.stdout)["deployment"] == DEPLOYMENT
    missing = tmp_path / "bad.csv"
    missing.write_text("id,label\nx,1\n")
    bad = subprocess.run(
        [sys.executable, "-m", "turnout", "actuals", DEPLOYMENT, str(missing)],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert bad.returncode != 0
    assert "prediction_id" in bad.stderr + bad.stdout
    assert "Traceback" not in bad.stderr


def metrics_once(
    server: LiveServer, deployment: str, done: Callable[[dict[str, Any]], bool], **query: str
) -> dict[str, Any]:
    """The deployment's metrics once `done` holds for them (the prediction log is flushed
    about every half second), or as they are at the deadline."""
    deadline = time.monotonic() + FLUSH_WAIT_S
    with server.client() as client:
        while True:
            metrics: dict[str, Any] = client.metrics(deployment, **query)
            if done(metrics) or time.monotonic() > deadline:
                return metrics
            time.sleep(0.1)


def logged(requests: dict[str, int]) -> Callable[[dict[str, Any]], bool]:
    """Whether the log holds at least these many requests per role."""

    def done(metrics: dict[str, Any]) -> bool:
        seen = Counter[str]()
        for group in metrics["groups"]:
            seen[group["role"]] += group["requests"]
        return all(seen[role] >= count for role, count in requests.items())

    return done


def groups(metrics: dict[str, Any]) -> dict[tuple[int, str], dict[str, Any]]:
    return {(g["version"], g["role"]): g for g in metrics["groups"]}


def test_drift_is_flagged_on_the_shifted_feature_only(server: LiveServer) -> None:
    features, _ = breast_cancer()
    with server.client() as client:
        client.create_deployment("bc-shifted", model="bc", version=1)
    shifted = features.sample(200, random_state=3).copy()
    shifted["mean radius"] = shifted["mean radius"] * 1.6
    send(server, shifted, "bc-shifted")
    metrics = metrics_once(
        server, "bc-shifted", lambda m: m["drift"].get("1", {}).get("rows") == 200, window="1h"
    )
    drift = metrics["drift"]["1"]
    assert drift["baseline"] is True
    assert drift["rows"] == 200
    assert "mean radius" in drift["drifted"]
    assert drift["features"]["mean radius"]["psi"] > 0.2
    assert drift["features"]["mean texture"]["drifted"] is False


def test_prometheus_counts_every_answer(server: LiveServer) -> None:
    features, _ = breast_cancer()
    with server.client() as client:
        client.create_deployment("bc-prom", model="bc", version=1)
    send(server, features.head(30), "bc-prom")
    deadline = time.monotonic() + 5
    while True:
        text = httpx.get(f"{server.url}/metrics").text
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }
        key = (
            "turnout_predictions_total",
            tuple(sorted({"deployment": "bc-prom", "version": "1", "role": "champion",
                          "outcome": "ok"}.items())),
        )  # fmt: skip
        if samples.get(key) == 30 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert samples.get(key) == 30
    count = (
        "turnout_prediction_latency_seconds_count",
        tuple(sorted({"deployment": "bc-prom", "version": "1", "role": "champion"}.items())),
    )
    assert samples[count] == 30


def test_a_graceful_shutdown_flushes_every_buffered_prediction(
    tmp_path: Path, models: tuple[Pipeline, Pipeline, Path]
) -> None:
    champion, _, folder = models
    home = tmp_path / "home"
    live = LiveServer(home, env={"TURNOUT_LOG_FLUSH_MS": "600000"}).start()
    try:
        with live.client() as client:
            client.register("bc", save_joblib(champion, folder, "one.joblib"), flavor="sklearn")
            client.create_deployment(DEPLOYMENT, model="bc", version=1)
        features, _ = breast_cancer()
        ids = send(live, features.head(50))
    finally:
        live.stop()  # SIGTERM: drain, then flush
    files = sorted(str(p) for p in (home / "artifacts" / "log").rglob("*.parquet"))
    assert files, "nothing was written"
    with duckdb.connect() as con:
        logged = con.execute(
            "select prediction_id, role, outcome, inputs from read_parquet(?)", [files]
        ).fetchall()
    assert sorted(r[0] for r in logged) == sorted(ids)
    assert {r[1] for r in logged} == {"champion"}
    assert {r[2] for r in logged} == {"ok"}
    first = features.head(1).to_numpy()[0]
    by_id = {r[0]: r[3] for r in logged}
    np.testing.assert_array_equal(np.asarray(orjson.loads(by_id[ids[0]])), first)


def test_failures_failovers_and_fallbacks_are_logged_with_their_outcomes(
    server: LiveServer, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    with server.client() as client:
        bad = client.register(
            "faulty", faulty_model(tmp_path / "bad", Fault.RAISES, release=release),
            flavor="python",
        )["version"]  # fmt: skip
        good = client.register("faulty", constant_model(tmp_path / "good", 3.0), flavor="python")[
            "version"
        ]
        client.create_deployment("guarded", model="faulty", version=bad, failover=good)
        client.create_deployment("fixed", model="faulty", version=bad, fallback=-1)
    with httpx.Client(base_url=server.url) as http:
        for name in ("guarded", "fixed"):
            for row in (FAULTY_ROW, BENIGN_ROW, FAULTY_ROW):
                r = http.post(f"/v1/deployments/{name}/predict", json={"instances": [row]})
                assert r.status_code == 200, r.text
    guarded = groups(metrics_once(server, "guarded", logged({"champion": 3, "failover": 2})))
    fixed = groups(metrics_once(server, "fixed", logged({"champion": 3, "fallback": 2})))
    assert guarded[(bad, "champion")]["requests"] == 3
    assert guarded[(bad, "champion")]["errors"] == 2
    assert guarded[(good, "failover")]["requests"] == 2
    assert guarded[(good, "failover")]["ok"] == 2
    assert fixed[(bad, "champion")]["errors"] == 2
    assert fixed[(bad, "fallback")]["fallbacks"] == 2
    assert fixed[(bad, "fallback")]["fallback_rate"] == 1.0
