"""Reading the prediction log with DuckDB: per-version summaries, answers by prediction id,
payloads for drift and graded answers for accuracy.

Every query reads an explicit list of live files (never a glob: compaction may be replacing
segments meanwhile) on its own connection (a cursor of the reader's in-memory DuckDB
database), so any thread may call any method. Files hold many deployments; a query sees the
rows of one (DuckDB skips row groups whose `deployment` statistics rule it out).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from turnout.errors import StoreUnavailable
from turnout.monitoring import segments
from turnout.monitoring.groups import GroupStats, rate
from turnout.monitoring.layout import (
    ACTUAL_SCHEMA,
    ACTUALS,
    PREDICTION_SCHEMA,
    PREDICTIONS,
    SCHEMAS,
)
from turnout.monitoring.remote import RemoteLog

ATTEMPTS = 4
"""One read, then up to three more when a listed file vanished (compacted away) meanwhile."""

ANSWER_COLUMNS = (
    "prediction_id",
    "revision",
    "model",
    "version",
    "role",
    "ts",
    "outcome",
    "output",
    "probabilities",
)
ANSWER_SCHEMA = pa.schema([PREDICTION_SCHEMA.field(name) for name in ANSWER_COLUMNS])
"""What `LogReader.lookup` returns: enough of each answer to grade it."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_SUMMARY = """
SELECT version, role,
       count(*) AS requests,
       count(*) FILTER (outcome = 'ok') AS ok,
       count(*) FILTER (outcome = 'error') AS errors,
       count(*) FILTER (outcome = 'timeout') AS timeouts,
       count(*) FILTER (outcome = 'fallback') AS fallbacks,
       quantile_cont(latency_ms::DOUBLE, [0.5, 0.95, 0.99]) AS latency,
       epoch_us(min(ts)) AS first_us,
       epoch_us(max(ts)) AS last_us
FROM {source}
WHERE {window}
GROUP BY version, role
"""

_ACCURACY = """
WITH latest AS (
    SELECT version, role,
           arg_max(actual, received_at) AS actual,
           any_value(output) AS output
    FROM {source}
    WHERE {window}
    GROUP BY prediction_id, version, role
)
SELECT version, role,
       count(*) AS actuals,
       count(*) FILTER (output = actual) AS correct,
       count(output) AS predicted
FROM latest
GROUP BY version, role
"""

_LOOKUP = """
SELECT {answer_columns}
FROM {source}
WHERE prediction_id BETWEEN $low AND $high
  AND prediction_id IN (SELECT prediction_id FROM wanted)
ORDER BY ts, prediction_id, version, role
"""

_INPUTS = """
SELECT prediction_id, inputs
FROM {source}
WHERE prediction_id BETWEEN $low AND $high
  AND prediction_id IN (SELECT prediction_id FROM wanted)
  AND version = $version AND role = $role AND inputs IS NOT NULL
"""

_PAYLOADS = """
SELECT inputs, output
FROM {source}
WHERE version = $version AND role <> 'fallback' AND outcome = 'ok'
  AND inputs IS NOT NULL AND output IS NOT NULL AND {window}
ORDER BY ts DESC
LIMIT $limit
"""

_GRADED = """
SELECT {actual_columns}
FROM {source}
WHERE {window}
QUALIFY row_number() OVER (
    PARTITION BY prediction_id, version, role ORDER BY received_at DESC
) = 1
ORDER BY predicted_at, prediction_id, version, role
"""

_GRADED_IDS = """
SELECT DISTINCT prediction_id
FROM {source}
WHERE prediction_id BETWEEN $low AND $high
  AND prediction_id IN (SELECT prediction_id FROM wanted)
"""


class LogReader:
    """Queries over one log root (the `<log root>` of `layout`). With the log shared on an
    object store (`remote`), each query first brings the root up to date with it (at most
    once a second; see `remote.RemoteLog.refresh`), so it counts every node's rows."""

    def __init__(
        self, root: Path, *, remote: RemoteLog | None = None, retention_days: int | None = None
    ) -> None:
        self.root = root
        self.remote = remote
        self.retention_days = retention_days
        self._database = duckdb.connect()
        """Holds no tables: each query opens a cursor (a connection of its own, cheap to open,
        unlike a new database) and registers what it needs there."""

    def summary(
        self,
        deployment: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[GroupStats]:
        """Traffic, outcomes, latency percentiles and accuracy per (version, role).

        Predictions count when their `ts` falls in [since, until); actuals when their
        `received_at` does. Latency percentiles are exact, over every logged row of the group.
        """
        traffic = self._select(
            PREDICTIONS, deployment, _SUMMARY, column="ts", since=since, until=until
        )
        grades = self._select(
            ACTUALS, deployment, _ACCURACY, column="received_at", since=since, until=until
        )
        groups: dict[tuple[int, str], GroupStats] = {}
        for row in traffic.to_pylist():
            groups[row["version"], row["role"]] = _traffic(deployment, row)
        for row in grades.to_pylist():
            key = (row["version"], row["role"])
            group = groups.get(key) or GroupStats(
                deployment=deployment, version=key[0], role=key[1]
            )
            groups[key] = replace(
                group,
                actuals=row["actuals"],
                correct=row["correct"],
                accuracy=rate(row["correct"], row["predicted"]),
            )
        return [groups[key] for key in sorted(groups)]

    def lookup(self, deployment: str, ids: Sequence[str]) -> pa.Table:
        """Every logged answer (any role, any outcome) to these prediction ids, oldest first."""
        wanted = _id_table(ids)
        if wanted.num_rows == 0:
            return ANSWER_SCHEMA.empty_table()
        bounds = _bounds(wanted)
        found = self._select(PREDICTIONS, deployment, _LOOKUP, params=bounds, wanted=wanted)
        return found.cast(ANSWER_SCHEMA)

    def inputs_of(
        self, deployment: str, ids: Sequence[str], *, version: int, role: str
    ) -> dict[str, str]:
        """The logged inputs (JSON rows) of these prediction ids as `version` in `role` saw
        them; ids without logged inputs are left out."""
        wanted = _id_table(ids)
        if wanted.num_rows == 0:
            return {}
        params = {**_bounds(wanted), "version": version, "role": role}
        found = self._select(PREDICTIONS, deployment, _INPUTS, params=params, wanted=wanted)
        return dict(
            zip(
                found.column("prediction_id").to_pylist(),
                found.column("inputs").to_pylist(),
                strict=True,
            )
        )

    def payloads(
        self,
        deployment: str,
        version: int,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100_000,
    ) -> tuple[list[str], list[str]]:
        """The most recent logged (inputs, output) JSON pairs of one version, newest first.

        Only answers a model produced (outcome ok, not the fallback value) with their payload
        logged; shadow answers included, since they see the same traffic.
        """
        found = self._select(
            PREDICTIONS,
            deployment,
            _PAYLOADS,
            column="ts",
            since=since,
            until=until,
            params={"version": version, "limit": max(limit, 0)},
        )
        return found.column("inputs").to_pylist(), found.column("output").to_pylist()

    def graded(
        self,
        deployment: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> pa.Table:
        """Actuals received in [since, until), the latest per (prediction_id, version, role)."""
        found = self._select(
            ACTUALS, deployment, _GRADED, column="received_at", since=since, until=until
        )
        return found.cast(ACTUAL_SCHEMA)

    def graded_ids(self, deployment: str, ids: Sequence[str]) -> set[str]:
        """Which of these prediction ids already have an actual."""
        wanted = _id_table(ids)
        if wanted.num_rows == 0:
            return set()
        found = self._select(
            ACTUALS, deployment, _GRADED_IDS, params=_bounds(wanted), wanted=wanted
        )
        return set(found.column("prediction_id").to_pylist())

    def _select(
        self,
        kind: str,
        deployment: str,
        sql: str,
        *,
        column: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        params: Mapping[str, Any] | None = None,
        wanted: pa.Table | None = None,
    ) -> pa.Table:
        """Run `sql` over the rows of `deployment` in the live files of one kind
        (`{source}`), `{window}` limiting `column` to [since, until)."""
        since, until = _utc(since), _utc(until)
        window, values = _window(column, since, until)
        values.update(params or {})
        if self.remote is not None:  # the days `live_files` reads below
            first = (since - timedelta(days=1)).date() if since else date.min
            self.remote.refresh(retention_days=self.retention_days, since=first)
        attempt = 1
        while True:
            files = segments.live_files(self.root, kind, deployment, since=since, until=until)
            try:
                with self._database.cursor() as con:
                    return _run(con, sql, deployment, window, values, files, kind, wanted)
            except duckdb.IOException as error:
                if attempt == ATTEMPTS:
                    raise StoreUnavailable(
                        f"cannot read the {kind} log of {deployment}: {error}"
                    ) from error
                attempt += 1


def _run(
    con: duckdb.DuckDBPyConnection,
    sql: str,
    deployment: str,
    window: str,
    values: dict[str, Any],
    files: list[Path],
    kind: str,
    wanted: pa.Table | None,
) -> pa.Table:
    """One query. No files yet: it runs over an empty table of the kind's schema, so callers
    get empty results of the usual shape."""
    if wanted is not None:
        con.register("wanted", wanted)
    if files:
        rows = "read_parquet($files, hive_partitioning = false)"
        values = {**values, "files": [str(f) for f in files]}
    else:
        rows = "empty_log"
        con.register(rows, SCHEMAS[kind].empty_table())
    values = {**values, "deployment": deployment}
    text = sql.format(
        source=f"(SELECT * FROM {rows} WHERE deployment = $deployment)",
        window=window,
        answer_columns=", ".join(ANSWER_COLUMNS),
        actual_columns=", ".join(ACTUAL_SCHEMA.names),
    )
    return con.sql(text, params=values or None).to_arrow_table()


def _window(
    column: str | None, since: datetime | None, until: datetime | None
) -> tuple[str, dict[str, Any]]:
    clauses: list[str] = ["true"]
    params: dict[str, Any] = {}
    if column is not None and since is not None:
        clauses.append(f"{column} >= $since")
        params["since"] = since
    if column is not None and until is not None:
        clauses.append(f"{column} < $until")
        params["until"] = until
    return " AND ".join(clauses), params


def _utc(when: datetime | None) -> datetime | None:
    """Naive datetimes are taken as UTC, like every timestamp of the log."""
    if when is None or when.tzinfo is not None:
        return when
    return when.replace(tzinfo=UTC)


def _id_table(ids: Sequence[str]) -> pa.Table:
    unique = list(dict.fromkeys(ids))
    return pa.table({"prediction_id": pa.array(unique, pa.string())})


def _bounds(wanted: pa.Table) -> dict[str, str]:
    """The smallest and largest wanted id: lets DuckDB skip row groups by their statistics
    (prediction ids are time-ordered, so a batch of recent ids spans few row groups)."""
    ids = wanted.column("prediction_id").to_pylist()
    return {"low": min(ids), "high": max(ids)}


def _timestamp(micros: int | None) -> str | None:
    return None if micros is None else (_EPOCH + timedelta(microseconds=micros)).isoformat()


def _traffic(deployment: str, row: dict[str, Any]) -> GroupStats:
    p50, p95, p99 = row["latency"] or (None, None, None)
    return GroupStats(
        deployment=deployment,
        version=row["version"],
        role=row["role"],
        requests=row["requests"],
        ok=row["ok"],
        errors=row["errors"],
        timeouts=row["timeouts"],
        fallbacks=row["fallbacks"],
        latency_p50_ms=p50,
        latency_p95_ms=p95,
        latency_p99_ms=p99,
        first_ts=_timestamp(row["first_us"]),
        last_ts=_timestamp(row["last_us"]),
    )
