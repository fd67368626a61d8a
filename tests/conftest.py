"""Session fixtures (a throwaway PostgreSQL) and the test tiers.

`make test-fast` runs `-m "not server and not slow and not postgres"`: tests that start a
server or PostgreSQL carry those marks in their modules; tests that take seconds without
either (fitting many models, statistical calibration, model code in runner or writer
processes) are marked `slow` here, by path, so that one list says what the fast tier leaves
out. `tests/test_tiers.py` checks that every entry names a test that exists."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from tests.pg import PostgresServer, find_pg_bin


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL server shared by the whole test session."""
    if find_pg_bin() is None:
        msg = (
            "PostgreSQL binaries not found (initdb/pg_ctl); install them with "
            "'apt-get install postgresql' (or run 'bash scripts/ensure-system-deps.sh' "
            "as root), or set TURNOUT_PG_BIN to the directory containing them"
        )
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url(pg_server: PostgresServer) -> str:
    """SQLAlchemy URL of a fresh, empty database for this test."""
    return pg_server.create_database(f"t_{uuid.uuid4().hex}")


SLOW = (
    # whole modules: every test fits models or resamples thousands of times
    "tests/lifecycle/retrain/test_service.py",
    "tests/lifecycle/test_sequential.py",
    "tests/lifecycle/test_validation.py",
    "tests/monitoring/test_metrics.py",
    "tests/store/test_s3_artifacts.py",  # an S3 server per module
    # single tests
    "tests/gateway/test_codec.py::test_native_junk_raises_only_bad_request",
    "tests/gateway/test_codec.py::test_oip_junk_raises_only_bad_request",
    "tests/gateway/test_access.py::test_made_up_tokens_cost_at_most_one_db_read_a_second",
    "tests/lifecycle/test_notify.py::test_close_delivers_what_is_queued",
    "tests/lifecycle/test_rollouts.py::test_a_challenge_step_is_held_for_its_minimum_time",
    "tests/lifecycle/test_rollouts.py::test_a_good_version_walks_through_every_gate_into_production",
    "tests/lifecycle/test_rollouts.py::test_each_challenge_step_waits_for_its_own_samples_when_shares_are_uneven",
    "tests/lifecycle/test_rollouts.py::test_validation_passes_a_candidate_as_good_as_the_champion",
    "tests/lifecycle/test_rollouts.py::test_validation_scores_the_candidate_on_labelled_traffic",
    "tests/lifecycle/test_sources.py::test_a_holdout_outside_the_roots_fails_validation_alike",
    "tests/monitoring/test_compaction.py::test_an_hour_of_many_deployments_merges_into_one_file_clustered_by_deployment",
    "tests/monitoring/test_compaction.py::test_closed_hour_merges_into_one_file_with_the_same_rows",
    "tests/monitoring/test_compaction.py::test_two_writers_expiring_at_once_delete_each_folder_once",
    "tests/monitoring/test_drift.py::test_ks_p_values_are_calibrated_when_nothing_changed",
    "tests/monitoring/test_predlog.py::test_a_writer_process_writes_the_same_rows_and_survives_being_killed",
    "tests/monitoring/test_predlog.py::test_one_flush_writes_one_file_for_every_deployment",
    "tests/monitoring/test_predlog.py::test_rows_recorded_while_the_writer_runs_land_exactly_once",
    "tests/monitoring/test_query.py::test_one_reader_serves_many_threads",
    "tests/registry/test_baseline.py::test_classifier_registration_records_its_label_frequencies",
    "tests/registry/test_flavors.py::test_lightgbm_binary_booster",
    "tests/registry/test_flavors.py::test_lightgbm_named_features_with_training_csv",
    "tests/registry/test_flavors.py::test_mlflow_sklearn_model_folder",
    "tests/registry/test_flavors.py::test_xgboost_classifier_json",
    "tests/registry/test_flavors.py::test_xgboost_regressor_json",
    "tests/registry/test_registry.py::test_metadata_round_trips",
    "tests/registry/test_skops_trust.py::test_real_skops_models_still_register",
    "tests/registry/test_skops_trust.py::test_skops_file_carrying_datasource_is_refused",
)
"""Tests (`path` or `path::function`, every parametrization included) past about a second
and a half on a 2-core machine that start no server: the fast tier leaves them out."""


def is_slow(nodeid: str) -> bool:
    path, _, rest = nodeid.partition("::")
    function = rest.split("[")[0].split("::")[-1]
    return path in SLOW or f"{path}::{function}" in SLOW


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if is_slow(item.nodeid):
            item.add_marker(pytest.mark.slow)
