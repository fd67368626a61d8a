"""`/metrics` sums the live workers' counters and reads back through Prometheus' own parser."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from turnout.monitoring.prometheus import FleetCollector, WorkerSnapshot, render, scrape
from turnout.monitoring.stats import BOUNDS_MS, TrafficStats
from turnout.store import metadata as md
from turnout.store.db import Database
from turnout.store.records import WorkerRecord

LATENCY = "turnout_prediction_latency_seconds"
PREDICTIONS = "turnout_predictions_total"


def record(
    worker_id: str,
    stats: TrafficStats,
    *,
    breakers: list[dict[str, Any]] | None = None,
    logging: dict[str, Any] | None = None,
) -> WorkerRecord:
    at = datetime.now(UTC)
    return WorkerRecord(
        id=worker_id,
        host="host",
        pid=1,
        started_at=at,
        heartbeat_at=at,
        revisions={},
        stats=stats.snapshot(),
        errors={},
        breakers=breakers or [],
        logging=logging or {},
    )


def snapshot(worker_id: str, stats: TrafficStats, **kw: Any) -> WorkerSnapshot:
    return WorkerSnapshot.of(record(worker_id, stats, **kw))


def fleet(*workers: WorkerRecord, local: WorkerSnapshot | None = None) -> FleetCollector:
    return FleetCollector(lambda: list(workers), lambda: local)


def scraped(collector: FleetCollector) -> list[Sample]:
    body, content_type = render(collector)
    assert content_type == CONTENT_TYPE_LATEST
    families = list(text_string_to_metric_families(body.decode()))
    return [s for f in families for s in f.samples]


def value(samples: list[Sample], name: str, **labels: str) -> float | None:
    found = [s.value for s in samples if s.name == name and s.labels == labels]
    assert len(found) <= 1
    return found[0] if found else None


def series(samples: list[Sample], name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {tuple(sorted(s.labels.items())): s.value for s in samples if s.name == name}


def observe_all(stats: TrafficStats, key: tuple[str, int, str], latencies: np.ndarray) -> None:
    counter = stats.counter(*key)
    for i, latency in enumerate(latencies):
        counter.observe(float(latency), ok=i % 7 != 0)


@pytest.fixture
def latencies() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    on_bounds = np.array([BOUNDS_MS[0], BOUNDS_MS[8], BOUNDS_MS[80], 0.01, 70_000.0])
    return np.concatenate([rng.lognormal(0.0, 1.5, 400), on_bounds]), rng.lognormal(1, 1, 300)


def test_histogram_buckets_are_exact_sums_of_every_worker(
    latencies: tuple[np.ndarray, np.ndarray],
) -> None:
    a, b = TrafficStats(), TrafficStats()
    observe_all(a, ("churn", 1, "champion"), latencies[0])
    observe_all(b, ("churn", 1, "champion"), latencies[1])
    samples = scraped(fleet(record("a", a), record("b", b)))

    both = np.concatenate(latencies)
    labels = {"deployment": "churn", "version": "1", "role": "champion"}
    buckets = [s for s in samples if s.name == f"{LATENCY}_bucket"]
    assert len(buckets) == 22
    assert buckets[-1].labels == {**labels, "le": "+Inf"}
    for k, s in enumerate(buckets[:-1]):
        assert float(s.labels["le"]) == pytest.approx(5e-05 * 2**k, rel=1e-12)
        assert s.value == np.count_nonzero(both <= BOUNDS_MS[8 * k])
    assert buckets[-1].value == len(both)
    assert value(samples, f"{LATENCY}_count", **labels) == len(both)
    assert value(samples, f"{LATENCY}_sum", **labels) == pytest.approx(both.sum() / 1000)
    errors = sum(len(x[::7]) for x in latencies)
    assert value(samples, PREDICTIONS, **labels, outcome="ok") == len(both) - errors
    assert value(samples, PREDICTIONS, **labels, outcome="error") == errors


def test_series_of_different_workers_add_up_by_deployment_version_and_role() -> None:
    a, b = TrafficStats(), TrafficStats()
    for stats, n in ((a, 3), (b, 5)):
        for _ in range(n):
            stats.counter("churn", 1, "champion").observe(1.0)
    for _ in range(2):
        b.counter("churn", 2, "challenger").observe(1.0)
    samples = scraped(fleet(record("a", a), record("b", b)))
    assert series(samples, PREDICTIONS) == {
        (("deployment", "churn"), ("outcome", "ok"), ("role", "champion"), ("version", "1")): 8,
        (("deployment", "churn"), ("outcome", "ok"), ("role", "challenger"), ("version", "2")): 2,
    }
    assert value(samples, "turnout_gateway_workers") == 2


def test_outcomes_split_errors_timeouts_and_fallbacks_and_skip_empty_ones() -> None:
    stats = TrafficStats()
    champion = stats.counter("churn", 1, "champion")
    for ok in (True,) * 6 + (False,) * 4:
        champion.observe(2.0, ok=ok)
    champion.timeouts = 1
    stats.counter("churn", 2, "challenger").observe(1.0)
    stats.counter("churn", 1, "fallback").observe(0.1)
    stats.counter("churn", 3, "failover").rejected = 2
    samples = scraped(fleet(record("w", stats)))

    assert series(samples, PREDICTIONS) == {
        (("deployment", "churn"), ("outcome", o), ("role", r), ("version", v)): n
        for o, r, v, n in [
            ("ok", "champion", "1", 6),
            ("error", "champion", "1", 3),
            ("timeout", "champion", "1", 1),
            ("ok", "challenger", "2", 1),
            ("fallback", "fallback", "1", 1),
            ("ok", "failover", "3", 0),
        ]
    }
    assert series(samples, "turnout_requests_rejected_total") == {
        (("deployment", "churn"), ("role", "failover"), ("version", "3")): 2
    }
    fallback = {"deployment": "churn", "version": "1", "role": "fallback"}
    assert value(samples, f"{LATENCY}_count", **fallback) == 1


def test_shadows_logging_and_breakers_are_summed_over_workers() -> None:
    a, b = TrafficStats(), TrafficStats()
    for stats, (dropped, compared, agreed) in ((a, (1, 10, 9)), (b, (2, 5, 3))):
        counter = stats.counter("churn", 2, "shadow")
        counter.dropped, counter.compared, counter.agreed = dropped, compared, agreed
    breakers_a = [
        {"model": "churn", "version": 1, "state": "open", "calls": 30},
        {"model": "churn", "version": 2, "state": "open"},
        {"model": "churn", "version": 3, "state": "half_open"},
    ]
    breakers_b = [
        {"model": "churn", "version": 1, "state": "open"},
        {"model": "churn", "version": 2, "state": "closed"},
    ]
    samples = scraped(
        fleet(
            record("a", a, breakers=breakers_a, logging={"buffered": 4, "written": 100}),
            record("b", b, breakers=breakers_b, logging={"buffered": 1, "dropped": 7}),
            record("c", TrafficStats()),  # an older worker that reports no logger
        )
    )
    shadow = {"deployment": "churn", "version": "2"}
    assert value(samples, "turnout_shadow_dropped_total", **shadow) == 3
    assert value(samples, "turnout_shadow_agreement_total", **shadow, result="agreed") == 12
    assert value(samples, "turnout_shadow_agreement_total", **shadow, result="disagreed") == 3
    assert value(samples, "turnout_prediction_log_rows_total", state="written") == 100
    assert value(samples, "turnout_prediction_log_rows_total", state="dropped") == 7
    assert value(samples, "turnout_prediction_log_buffered_rows") == 5
    assert series(samples, "turnout_breaker_open") == {
        (("model", "churn"), ("version", "1")): 2,
        (("model", "churn"), ("version", "2")): 1,
        (("model", "churn"), ("version", "3")): 0,
    }
    assert value(samples, "turnout_gateway_workers") == 3


def test_the_only_worker_counts_its_own_latest_requests_instead_of_its_row() -> None:
    stats = TrafficStats()
    stats.counter("churn", 1, "champion").observe(1.0)
    stale = record("w", stats)
    stats.counter("churn", 1, "champion").observe(1.0)
    ok = {"deployment": "churn", "version": "1", "role": "champion", "outcome": "ok"}

    samples = scraped(fleet(stale, local=snapshot("w", stats)))
    assert value(samples, PREDICTIONS, **ok) == 2
    assert value(samples, "turnout_gateway_workers") == 1
    # before its first heartbeat row exists
    assert value(scraped(fleet(local=snapshot("w", stats))), PREDICTIONS, **ok) == 2


def test_with_several_workers_every_scrape_sums_the_same_rows_whoever_answers() -> None:
    a, b = TrafficStats(), TrafficStats()
    a.counter("churn", 1, "champion").observe(1.0)
    b.counter("churn", 1, "champion").observe(1.0)
    rows = (record("a", a), record("b", b))
    a.counter("churn", 1, "champion").observe(1.0, ok=False)  # after a's row was written

    answers = [
        render(fleet(*rows, local=snapshot("a", a)))[0],
        render(fleet(*rows, local=snapshot("b", b)))[0],
        render(fleet(*rows))[0],
    ]
    assert answers[0] == answers[1] == answers[2]
    samples = scraped(fleet(*rows, local=snapshot("a", a)))
    ok = {"deployment": "churn", "version": "1", "role": "champion", "outcome": "ok"}
    assert value(samples, PREDICTIONS, **ok) == 2


def test_an_empty_fleet_renders_valid_exposition() -> None:
    body, _ = render(fleet())
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    assert {
        "turnout_predictions",
        LATENCY,
        "turnout_requests_rejected",
        "turnout_shadow_dropped",
        "turnout_shadow_agreement",
        "turnout_prediction_log_rows",
        "turnout_prediction_log_buffered_rows",
        "turnout_breaker_open",
        "turnout_gateway_workers",
    } <= set(families)
    assert families["turnout_predictions"].type == "counter"
    assert families[LATENCY].type == "histogram"
    assert families["turnout_predictions"].samples == []
    assert [s.value for s in families["turnout_gateway_workers"].samples] == [0]


def test_label_values_with_quotes_backslashes_and_newlines_survive_the_round_trip() -> None:
    odd = 'say "hi"\\ there\nnow'
    stats = TrafficStats()
    stats.counter(odd, 1, "champion").observe(1.0)
    breakers = [{"model": odd, "version": 1, "state": "open"}]
    body, _ = render(fleet(record("w", stats, breakers=breakers)))
    assert b'say \\"hi\\"\\\\ there\\nnow' in body
    samples = scraped(fleet(record("w", stats, breakers=breakers)))
    labels = {"deployment": odd, "version": "1", "role": "champion"}
    assert value(samples, PREDICTIONS, **labels, outcome="ok") == 1
    assert value(samples, "turnout_breaker_open", model=odd, version="1") == 1


def test_scrape_reads_the_local_counters_once_before_leaving_the_event_loop() -> None:
    stats = TrafficStats()
    reads: list[int] = []

    def local() -> WorkerSnapshot:
        reads.append(1)
        return snapshot("w", stats)

    collector = FleetCollector(list, local)
    stats.counter("churn", 1, "champion").observe(1.0)
    pinned = collector.pinned()
    stats.counter("churn", 1, "champion").observe(1.0)
    ok = {"deployment": "churn", "version": "1", "role": "champion", "outcome": "ok"}
    assert value(scraped(pinned), PREDICTIONS, **ok) == 1
    assert len(reads) == 1

    body, content_type = asyncio.run(scrape(collector))
    assert content_type == CONTENT_TYPE_LATEST
    assert b'outcome="ok",role="champion",version="1"} 2.0' in body


# -- through the metadata database -----------------------------------------------------------


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database.from_url(f"sqlite:///{tmp_path / 'turnout.db'}")
    database.migrate()
    yield database
    database.dispose()


def heartbeat(worker_id: str, stats: TrafficStats, **extra: Any) -> dict[str, Any]:
    """What a worker's heartbeat hands to `report_worker`."""
    return {
        "worker_id": worker_id,
        "host": "host",
        "pid": 1,
        "started_at": datetime.now(UTC),
        "revisions": {"churn": 1},
        "stats": stats.snapshot(),
        "errors": {},
        **extra,
    }


def test_the_collector_sums_workers_read_back_from_the_database(
    db: Database, latencies: tuple[np.ndarray, np.ndarray]
) -> None:
    a, b = TrafficStats(), TrafficStats()
    observe_all(a, ("churn", 1, "champion"), latencies[0])
    observe_all(b, ("churn", 1, "champion"), latencies[1])
    b.counter("churn", 2, "shadow").dropped = 4
    reports = [
        heartbeat("a", a, logging={"written": 10, "buffered": 2}),
        heartbeat("b", b, breakers=[{"model": "churn", "version": 1, "state": "open"}]),
    ]
    with db.write() as conn:
        for report in reports:
            md.report_worker(conn, **report)

    def live() -> list[WorkerRecord]:
        with db.read() as conn:
            return md.list_workers(conn, alive_since=md.now() - timedelta(seconds=5))

    samples = scraped(FleetCollector(live, lambda: WorkerSnapshot.from_report(reports[0])))
    both = np.concatenate(latencies)
    labels = {"deployment": "churn", "version": "1", "role": "champion"}
    assert value(samples, f"{LATENCY}_count", **labels) == len(both)
    assert value(samples, f"{LATENCY}_sum", **labels) == pytest.approx(both.sum() / 1000)
    assert value(samples, f"{LATENCY}_bucket", **labels, le="0.0016") == np.count_nonzero(
        both <= BOUNDS_MS[40]
    )
    assert value(samples, PREDICTIONS, **labels, outcome="error") == sum(
        len(x[::7]) for x in latencies
    )
    assert value(samples, "turnout_shadow_dropped_total", deployment="churn", version="2") == 4
    assert value(samples, "turnout_prediction_log_rows_total", state="written") == 10
    assert value(samples, "turnout_prediction_log_buffered_rows") == 2
    assert value(samples, "turnout_breaker_open", model="churn", version="1") == 1
    assert value(samples, "turnout_gateway_workers") == 2
