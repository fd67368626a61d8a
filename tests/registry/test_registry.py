"""The registry: version numbering under concurrency, atomic registration, training
baselines, the pickle policy, tamper detection and lineage."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.pipeline import Pipeline

from tests.fixtures import python_models as pm
from tests.fixtures.models import (
    breast_cancer,
    save_joblib,
    save_python,
    sklearn_pipeline,
    training_csv,
)
from tests.fixtures.registry import blob_path, open_registry
from turnout.errors import ArtifactCorrupted, BadRequest, InvalidArtifact, NotFound, PolicyRefused
from turnout.registry.service import NewVersion, Registry
from turnout.store import metadata as md
from turnout.store.artifacts import safe_relative_path

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "registry"


@pytest.fixture
def registry(root: Path) -> Iterator[Registry]:
    with open_registry(root) as reg:
        yield reg


@pytest.fixture
def model_py(tmp_path: Path) -> Path:
    """A cheap, valid python-flavor model to register many times."""
    return save_python(tmp_path)


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    return sklearn_pipeline()


def register(
    registry: Registry, source: Path, model: str = "m", *, flavor: str = "python", **extra: Any
) -> int:
    """Register `source` and return the version number it got."""
    return registry.register(NewVersion(model=model, source=source, flavor=flavor, **extra)).version


def audit_targets(registry: Registry) -> list[str]:
    with registry.db.read() as conn:
        return [str(entry["target"]) for entry in md.list_audit(conn)]


# -- version numbers ----------------------------------------------------------------------


def test_versions_count_up_per_model_independently(registry: Registry, model_py: Path) -> None:
    assert [register(registry, model_py, "churn") for _ in range(3)] == [1, 2, 3]
    assert register(registry, model_py, "fraud") == 1
    assert register(registry, model_py, "churn") == 4

    assert [v.version for v in registry.list_versions("churn")] == [1, 2, 3, 4]
    assert registry.latest_version("fraud").version == 1
    counts = {model.name: (n, latest) for model, n, latest in registry.list_models()}
    assert counts == {"churn": (4, 4), "fraud": (1, 1)}


@pytest.mark.parametrize("name", ["", "-lead", "has space", "a/b", "x" * 129, "m:1"])
def test_invalid_model_names_are_refused(registry: Registry, model_py: Path, name: str) -> None:
    with pytest.raises(BadRequest, match="invalid model name"):
        register(registry, model_py, name)
    assert registry.list_models() == []


def test_concurrent_threads_get_distinct_gapless_versions(
    registry: Registry, model_py: Path
) -> None:
    n = 8
    barrier = threading.Barrier(n)

    def one(_: int) -> int:
        barrier.wait()
        return register(registry, model_py, "shared")

    with ThreadPoolExecutor(max_workers=n) as pool:
        versions = list(pool.map(one, range(n)))

    assert sorted(versions) == list(range(1, n + 1))
    assert [v.version for v in registry.list_versions("shared")] == list(range(1, n + 1))
    assert len(registry.list_models()) == 1


@pytest.mark.slow
def test_concurrent_processes_get_distinct_gapless_versions(
    registry: Registry, root: Path, model_py: Path, tmp_path: Path
) -> None:
    processes, each = 4, 2
    start = tmp_path / "start"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "src")])}
    command = [sys.executable, "-m", "tests.fixtures.register_worker"]
    args = [str(root), str(model_py), str(start), str(each)]
    workers = [
        subprocess.Popen(
            command + args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(processes)
    ]
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("ready-*"))) < processes and time.monotonic() < deadline:
        time.sleep(0.01)
    start.touch()
    versions: list[int] = []
    for worker in workers:
        out, err = worker.communicate(timeout=60)
        assert worker.returncode == 0, err.decode()
        versions.extend(int(line) for line in out.split())

    expected = list(range(1, processes * each + 1))
    assert sorted(versions) == expected
    assert [v.version for v in registry.list_versions("shared")] == expected


# -- atomic registration ------------------------------------------------------------------


def test_failed_registration_leaves_no_rows(registry: Registry, tmp_path: Path) -> None:
    garbage = tmp_path / "model.joblib"
    garbage.write_bytes(b"definitely not a pickle" * 10)

    with pytest.raises(InvalidArtifact):
        register(registry, garbage, "broken", flavor="sklearn")

    assert registry.list_models() == []
    with pytest.raises(NotFound):
        registry.get_model("broken")
    assert audit_targets(registry) == []


def test_failure_after_a_good_version_leaves_no_gap(
    registry: Registry, model_py: Path, tmp_path: Path
) -> None:
    assert register(registry, model_py) == 1
    with pytest.raises(InvalidArtifact, match="failed to predict"):
        register(registry, pm.write(tmp_path / "bad", pm.RAISES_ON_PREDICT))
    with pytest.raises(NotFound, match="m:7"):
        register(registry, model_py, parent_version=7)

    assert [v.version for v in registry.list_versions("m")] == [1]
    assert register(registry, model_py) == 2
    assert audit_targets(registry) == ["m:1", "m:2"]


def test_missing_source_is_a_bad_request(registry: Registry, tmp_path: Path) -> None:
    with pytest.raises(BadRequest, match="does not exist"):
        register(registry, tmp_path / "nowhere.py")
    assert registry.list_models() == []


def test_folder_with_a_symlink_is_refused(registry: Registry, tmp_path: Path) -> None:
    folder = pm.save_folder_model(tmp_path / "linked")
    (folder / "secret").symlink_to("/etc/hostname")
    with pytest.raises(BadRequest, match="symlink"):
        register(registry, folder)
    assert registry.list_models() == []


# -- training data ------------------------------------------------------------------------


def test_training_data_baseline(registry: Registry, tmp_path: Path, pipeline: Pipeline) -> None:
    features, target = breast_cancer()
    csv = training_csv(tmp_path)
    record = registry.register(
        NewVersion(
            model="bc",
            source=save_joblib(pipeline, tmp_path),
            flavor="sklearn",
            training_data=csv,
            target="target",
        )
    )

    training = record.training
    assert training is not None
    assert training["rows"] == len(features)
    assert len(str(training["fingerprint"])) == 64
    stats = training["features"]
    assert list(stats) == list(features.columns)
    for name in ("mean radius", "worst area"):
        assert stats[name]["kind"] == "numeric"
        assert stats[name]["count"] == len(features)
        assert stats[name]["missing"] == 0
        np.testing.assert_allclose(stats[name]["mean"], features[name].mean())
        np.testing.assert_allclose(stats[name]["std"], features[name].std())
        assert stats[name]["min"] == features[name].min()
        assert stats[name]["max"] == features[name].max()
        assert sum(stats[name]["bin_counts"]) == len(features)
    assert training["target"] == "target"
    np.testing.assert_allclose(training["target_stats"]["mean"], target.mean())
    stored = training["file"]
    assert stored["name"] == "train.csv"
    assert registry.artifacts.exists(stored["sha256"])
    assert registry.get_version("bc", 1).training == training


def test_same_data_as_csv_or_parquet_has_the_same_fingerprint(
    registry: Registry, tmp_path: Path, pipeline: Pipeline
) -> None:
    features, target = breast_cancer()
    frame = features.assign(target=target)
    csv, parquet = tmp_path / "train.csv", tmp_path / "train.parquet"
    frame.to_csv(csv, index=False)
    frame.to_parquet(parquet, index=False)
    source = save_joblib(pipeline, tmp_path)

    def fingerprint(data: Path) -> str:
        new = NewVersion(
            model="bc", source=source, flavor="sklearn", training_data=data, target="target"
        )
        training = registry.register(new).training
        assert training is not None
        return str(training["fingerprint"])

    from_csv, from_parquet = fingerprint(csv), fingerprint(parquet)
    assert from_csv == from_parquet

    radius = frame["mean radius"].to_numpy(copy=True)
    radius[0] += 1.0
    frame.assign(**{"mean radius": radius}).to_csv(tmp_path / "changed.csv", index=False)
    assert fingerprint(tmp_path / "changed.csv") != from_csv


def test_training_data_without_target_column(
    registry: Registry, tmp_path: Path, pipeline: Pipeline
) -> None:
    source = save_joblib(pipeline, tmp_path)
    with pytest.raises(InvalidArtifact, match="target column 'label'"):
        registry.register(
            NewVersion(
                model="bc",
                source=source,
                flavor="sklearn",
                training_data=training_csv(tmp_path),
                target="label",
            )
        )
    assert registry.list_models() == []


def test_training_data_missing_model_features(
    registry: Registry, tmp_path: Path, pipeline: Pipeline
) -> None:
    features, target = breast_cancer()
    data = tmp_path / "partial.csv"
    features.drop(columns=["mean radius"]).assign(target=target).to_csv(data, index=False)
    new = NewVersion(
        model="bc",
        source=save_joblib(pipeline, tmp_path),
        flavor="sklearn",
        training_data=data,
        target="target",
    )
    with pytest.raises(InvalidArtifact, match=r"lacks the model's features.*mean radius"):
        registry.register(new)


def test_training_data_in_an_unknown_format(
    registry: Registry, model_py: Path, tmp_path: Path
) -> None:
    data = tmp_path / "train.xlsx"
    data.write_bytes(b"PK\x03\x04")
    with pytest.raises(BadRequest, match=r"must be \.csv or \.parquet"):
        register(registry, model_py, training_data=data)


def test_training_data_gives_a_signature_to_a_bare_model(
    registry: Registry, tmp_path: Path
) -> None:
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [0.5, 0.1, 0.2], "y": [0, 1, 0]})
    data = tmp_path / "small.csv"
    frame.to_csv(data, index=False)
    record = registry.register(
        NewVersion(
            model="bare",
            source=pm.write(tmp_path / "bare", pm.NO_SIGNATURE),
            flavor="python",
            training_data=data,
            target="y",
        )
    )
    assert [c["name"] for c in record.signature["inputs"]] == ["a", "b"]
    assert record.signature["named"] is True


# -- pickle policy ------------------------------------------------------------------------


def test_pickle_refused_by_policy_but_skops_accepted(
    root: Path, tmp_path: Path, pipeline: Pipeline
) -> None:
    features, _ = breast_cancer()
    skops_file = tmp_path / "model.skops"
    sio.dump(pipeline, skops_file)

    with open_registry(root, allow_pickle=False) as strict:
        for source in (save_joblib(pipeline, tmp_path), save_joblib(pipeline, tmp_path, "m.pkl")):
            with pytest.raises(PolicyRefused, match="pickle"):
                register(strict, source, "bc", flavor="sklearn")
        assert strict.list_models() == []

        record = strict.register(NewVersion(model="bc", source=skops_file, flavor="sklearn"))
        prediction = strict.load(record).predict(features.to_numpy())
    assert record.version == 1
    np.testing.assert_array_equal(prediction.values, pipeline.predict(features))


def test_pickle_version_is_not_loaded_once_policy_forbids_it(
    root: Path, tmp_path: Path, pipeline: Pipeline
) -> None:
    with open_registry(root, allow_pickle=True) as permissive:
        record = permissive.register(
            NewVersion(model="bc", source=save_joblib(pipeline, tmp_path), flavor="sklearn")
        )
    with (
        open_registry(root, allow_pickle=False) as strict,
        pytest.raises(PolicyRefused, match="bc:1"),
    ):
        strict.load(record)


# -- stored artifacts ---------------------------------------------------------------------


def test_tampered_blob_is_never_loaded(
    registry: Registry, root: Path, tmp_path: Path, pipeline: Pipeline
) -> None:
    record = registry.register(
        NewVersion(model="bc", source=save_joblib(pipeline, tmp_path), flavor="sklearn")
    )
    registry.verify(record)
    blob = blob_path(root, record.artifact.files[0].sha256)
    assert blob.stat().st_mode & 0o777 == 0o400

    blob.chmod(0o644)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))

    with pytest.raises(ArtifactCorrupted, match="corrupted"):
        registry.verify(record)
    with pytest.raises(ArtifactCorrupted, match="will not be loaded"):
        registry.load(record)
    assert list(registry.work_dir.iterdir()) == []


def test_missing_blob_is_reported(registry: Registry, root: Path, model_py: Path) -> None:
    record = registry.register(NewVersion(model="m", source=model_py, flavor="python"))
    blob_path(root, record.artifact.files[0].sha256).unlink()
    with pytest.raises(NotFound, match="missing"):
        registry.verify(record)
    with pytest.raises(NotFound, match="missing"):
        registry.load(record)


def test_same_file_registered_twice_is_stored_once(
    registry: Registry, root: Path, model_py: Path
) -> None:
    first = registry.register(NewVersion(model="a", source=model_py, flavor="python"))
    second = registry.register(NewVersion(model="b", source=model_py, flavor="python"))

    assert first.artifact.files == second.artifact.files
    blobs = [p for p in (root / "artifacts" / "sha256").rglob("*") if p.is_file()]
    assert [p.name for p in blobs] == [first.artifact.files[0].sha256]


def test_folder_artifact_keeps_relative_paths(registry: Registry, tmp_path: Path) -> None:
    folder = pm.save_folder_model(tmp_path / "model")
    (folder / "assets").mkdir()
    (folder / "assets" / "notes.txt").write_text("kept as is")

    record = registry.register(NewVersion(model="m", source=folder, flavor="python"))

    assert record.artifact.kind == "dir"
    paths = [f.path for f in record.artifact.files]
    assert paths == ["assets/notes.txt", "model.py", "params.json"]
    with registry.materialized(record) as materialized:
        assert (materialized / "assets" / "notes.txt").read_text() == "kept as is"


@pytest.mark.parametrize(
    "path", ["..", "../escape", "a/../../b", "/etc/passwd", "a//b", "./a", "a\\b", "", "a\x00b"]
)
def test_safe_relative_path_refuses_escapes(path: str) -> None:
    with pytest.raises(BadRequest):
        safe_relative_path(path)


@pytest.mark.parametrize("path", ["model.py", "sub/dir/weights.bin", "..hidden", "a..b"])
def test_safe_relative_path_keeps_plain_paths(path: str) -> None:
    assert safe_relative_path(path) == path


# -- metadata and lineage -----------------------------------------------------------------


def test_metadata_round_trips(registry: Registry, model_py: Path) -> None:
    created = registry.register(
        NewVersion(
            model="m",
            source=model_py,
            flavor="python",
            metrics={"auc": 0.973, "n_trees": 200},
            params={"C": "0.5", "solver": "lbfgs"},
            tags={"team": "risk", "stage": "candidate"},
            description="logistic baseline",
            lineage={"retrain_job": "job-42", "data": ["s3://bucket/train.csv"]},
            actor="alice",
        )
    )

    stored = registry.get_version("m", created.version)
    assert stored == created
    assert stored.metrics == {"auc": 0.973, "n_trees": 200.0}
    assert stored.params == {"C": "0.5", "solver": "lbfgs"}
    assert stored.tags == {"team": "risk", "stage": "candidate"}
    assert stored.description == "logistic baseline"
    assert stored.lineage == {"retrain_job": "job-42", "data": ["s3://bucket/train.csv"]}
    assert stored.created_by == "alice"
    assert stored.flavor == "python"
    assert stored.training is None
    assert stored.created_at.tzinfo is not None


def test_lineage_follows_parent_versions(registry: Registry, model_py: Path) -> None:
    register(registry, model_py)
    register(registry, model_py)
    register(registry, model_py, parent_version=1)
    register(registry, model_py, parent_version=3)

    assert [v.version for v in registry.lineage("m", 4)] == [4, 3, 1]
    assert [v.version for v in registry.lineage("m", 2)] == [2]
    assert registry.get_version("m", 4).parent_version == 3


def test_unknown_versions_and_models(registry: Registry, model_py: Path) -> None:
    register(registry, model_py)
    with pytest.raises(NotFound, match="m:9"):
        registry.get_version("m", 9)
    with pytest.raises(NotFound, match="'other'"):
        registry.get_version("other", 1)
    with pytest.raises(NotFound, match="'other'"):
        registry.list_versions("other")
