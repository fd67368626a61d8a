"""Server-side data named by API callers: files only under the data roots, databases and S3
prefixes only from the configured list; refusals the same whether or not the place exists,
and never quoting the file."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tests.fixtures.models import sklearn_pipeline
from tests.fixtures.registry import open_registry
from tests.lifecycle.test_validation import Bench
from turnout.errors import BadRequest
from turnout.lifecycle.retrain.data import load_training_data
from turnout.lifecycle.retrain.policy import DataSource
from turnout.lifecycle.sources import DataAccess
from turnout.monitoring.query import LogReader
from turnout.settings import Settings

SECRET_HEADER = "root_password,api_key"


@pytest.fixture
def roots(tmp_path: Path) -> tuple[Path, Path]:
    """(an allowed data folder with a good CSV, a private folder with a secret CSV)."""
    data, private = tmp_path / "data", tmp_path / "private"
    data.mkdir()
    private.mkdir()
    pd.DataFrame({"x": [1.0, 2.0], "c": ["a", "b"], "y": [0, 1]}).to_csv(
        data / "train.csv", index=False
    )
    (private / "secret.csv").write_text(f"{SECRET_HEADER}\nhunter2,tnt_abc\n")
    return data, private


def access_for(data: Path, *urls: str) -> DataAccess:
    return DataAccess(roots=(data.resolve(),), urls=urls)


def load(source: DataSource, access: DataAccess, log_root: Path) -> object:
    return load_training_data(
        source,
        columns=["x", "c"],
        target="y",
        deployment="d",
        log=LogReader(log_root),
        access=access,
    )


def test_default_root_is_the_homes_data_folder(tmp_path: Path) -> None:
    access = DataAccess.from_settings(Settings(home=tmp_path))
    assert access.roots == ((tmp_path / "data").resolve(),)
    assert access.urls == ()
    configured = DataAccess.from_settings(
        Settings(home=tmp_path, data_roots=f"/srv/a:{tmp_path}/b", data_urls="s3://b/p, x://")
    )
    assert configured.roots == (Path("/srv/a"), (tmp_path / "b").resolve())
    assert configured.urls == ("s3://b/p", "x://")


def test_training_data_outside_the_roots_is_never_read(
    roots: tuple[Path, Path], tmp_path: Path
) -> None:
    data, private = roots
    access = access_for(data)
    messages = []
    for path in (
        private / "secret.csv",  # exists
        private / "missing.csv",  # does not
        data / ".." / "private" / "secret.csv",
        private / "*.csv",
    ):
        with pytest.raises(BadRequest, match="TURNOUT_DATA_ROOTS") as refused:
            load(DataSource(path=str(path)), access, tmp_path)
        messages.append(refused.value.message)
        assert SECRET_HEADER.split(",")[0] not in refused.value.message
    assert len(set(messages)) == 1
    with pytest.raises(BadRequest, match="TURNOUT_DATA_ROOTS"):
        load(DataSource(path=str(data / "train.csv"), reference=str(private / "secret.csv")),
             access, tmp_path)  # fmt: skip


def test_a_symlink_inside_a_root_may_not_lead_out(roots: tuple[Path, Path], tmp_path: Path) -> None:
    data, private = roots
    (data / "link.csv").symlink_to(private / "secret.csv")
    with pytest.raises(BadRequest, match="TURNOUT_DATA_ROOTS") as refused:
        load(DataSource(path=str(data)), access_for(data), tmp_path)
    assert "hunter2" not in refused.value.message
    with pytest.raises(BadRequest, match="TURNOUT_DATA_ROOTS"):
        load(DataSource(path=str(data / "link.csv")), access_for(data), tmp_path)


def test_training_data_under_a_root_is_read(roots: tuple[Path, Path], tmp_path: Path) -> None:
    data, _ = roots
    for path in (data / "train.csv", data, data / "*.csv"):
        loaded = load(DataSource(path=str(path)), access_for(data), tmp_path)
        assert loaded.rows == 2  # type: ignore[attr-defined]


def test_sql_sources_only_on_configured_databases(roots: tuple[Path, Path], tmp_path: Path) -> None:
    data, _ = roots
    db = tmp_path / "train.db"
    pd.DataFrame({"x": [1.0], "c": ["a"], "y": [1]}).to_sql("t", f"sqlite:///{db}", index=False)
    access = access_for(data, f"sqlite:///{db}", "postgresql://reader@db.internal:5432/warehouse")
    loaded = load(DataSource(sql="select * from t", url=f"sqlite:///{db}"), access, tmp_path)
    assert loaded.rows == 1  # type: ignore[attr-defined]
    for url in (
        f"sqlite:///{tmp_path / 'home' / 'turnout.db'}",
        "postgresql://reader:pw@evil.example:5432/warehouse",
        "postgresql://admin:pw@db.internal:5432/warehouse",
        "postgresql://reader:pw@db.internal:5432/other",
        "not a url at all",
    ):
        with pytest.raises(BadRequest, match="TURNOUT_DATA_URLS") as refused:
            load(DataSource(sql="select 1", url=url), access, tmp_path)
        assert "pw" not in refused.value.message
    # the driver, the password and the query string may differ
    access.check_url("postgresql+psycopg://reader:pw@db.internal:5432/warehouse?x=1", what="db")


def test_s3_sources_only_under_configured_prefixes(roots: tuple[Path, Path]) -> None:
    data, _ = roots
    access = access_for(data, "s3://bucket/training/")
    access.check_path("s3://bucket/training/2026/*.parquet", what="data")
    access.check_path("s3://bucket/training", what="data")
    for location in ("s3://bucket/training-private/x.csv", "s3://other/training/x.csv"):
        with pytest.raises(BadRequest, match="TURNOUT_DATA_URLS"):
            access.check_path(location, what="data")


def test_a_holdout_outside_the_roots_fails_validation_alike(tmp_path: Path) -> None:
    with open_registry(tmp_path / "registry") as registry:
        bench = Bench(tmp_path, registry)
        champion = bench.register(sklearn_pipeline(1.0))
        candidate = bench.register(sklearn_pipeline(0.5))
        access = DataAccess(roots=((tmp_path / "data").resolve(),), urls=())
        reasons = []
        for holdout in (bench.data, tmp_path / "missing.csv"):
            verdict = bench.validate(
                {"holdout": str(holdout), "label_column": "target"}, champion, candidate,
                access=access,
            )  # fmt: skip
            assert verdict.outcome == "fail"
            reasons.append(verdict.reason)
        assert len(set(reasons)) == 1
        assert "TURNOUT_DATA_ROOTS" in reasons[0]
