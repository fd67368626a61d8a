"""When a deployment's champion is retrained: the policy's triggers judged against facts.

`decide` is pure (facts in, decision out), so every rule can be checked with a fixed clock;
`gather` reads the facts from the jobs store, the active routing and the prediction log.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
from croniter import croniter

from turnout.errors import StoreUnavailable
from turnout.lifecycle.retrain.policy import RetrainPolicy, Triggers
from turnout.monitoring import segments
from turnout.monitoring.groups import GroupStats, find_group
from turnout.monitoring.layout import ACTUALS
from turnout.monitoring.query import ATTEMPTS
from turnout.monitoring.service import Monitor, Window
from turnout.registry.service import Registry
from turnout.store import jobs
from turnout.store import metadata as md
from turnout.store.db import Database
from turnout.types import JSON

SCHEDULE, DRIFT, ACCURACY, NEW_ACTUALS = "schedule", "drift", "accuracy", "actuals"
PRECEDENCE = (SCHEDULE, DRIFT, ACCURACY, NEW_ACTUALS)
"""When several triggers fire at once, the first of these names the retrain."""

TOLERANCE = 1e-9
"""Differences this small count as equal: 0.90 - 0.85 is 0.05000000000000004 in floats, and
a drop of exactly `accuracy_drop` must not fire."""

_WINDOW_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
_WINDOW_MAX = 999_999
"""The largest count `Window.parse` takes (six digits)."""

_NEW_ACTUALS = """
SELECT count(DISTINCT prediction_id)
FROM read_parquet($files, hive_partitioning = false)
WHERE deployment = $deployment AND received_at > $since AND received_at <= $until
"""


@dataclass(frozen=True, kw_only=True)
class Facts:
    """What the triggers are judged on, as of `now`."""

    now: datetime
    """Aware; schedules are read in UTC whatever its zone."""
    checked_at: datetime | None = None
    """The previous evaluation; None: never evaluated (a schedule only arms)."""
    last_retrain_at: datetime | None = None
    """When the deployment's latest retrain job was created (any trigger, any outcome)."""
    running: bool = False
    """A retrain job is queued or running."""
    drift: dict[str, JSON] | None = None
    """The champion's drift section of `Monitor.metrics` (`rows`, `features: {name: {psi,
    drifted, ...}}`), or None when unknown."""
    accuracy: float | None = None
    """The champion's live accuracy over the window."""
    actuals: int = 0
    """Actuals graded for the champion over the window."""
    registered_accuracy: float | None = None
    """The champion version's registered `accuracy` metric (its validation score)."""
    new_actuals: int = 0
    """Actuals received since the last retrain (or since the champion was registered)."""


@dataclass(frozen=True, kw_only=True)
class Decision:
    fire: bool
    trigger: str | None
    """The first trigger that fired, in `PRECEDENCE` order; None when not firing."""
    reason: str
    """One sentence with the numbers, also saying why not when not firing."""
    detail: dict[str, JSON]
    """Every set trigger's value and threshold, and what held a retrain back."""


@dataclass(frozen=True)
class _Check:
    trigger: str
    fired: bool
    reason: str
    detail: dict[str, JSON]


# -- the decision -------------------------------------------------------------------------


def decide(policy: RetrainPolicy, facts: Facts) -> Decision:
    """Whether the policy's triggers call for a retrain now. A queued or running job, or
    the cooldown after the latest one, holds every trigger back."""
    checks = _checks(policy.triggers, facts)
    fired = [check for check in checks if check.fired]
    detail: dict[str, JSON] = {
        "now": _iso(facts.now),
        "running": facts.running,
        "last_retrain_at": _iso(facts.last_retrain_at),
        "cooldown_s": policy.cooldown,
        "fired": [check.trigger for check in fired],
        "triggers": {check.trigger: check.detail for check in checks},
    }
    held = _held(policy, facts)
    if held is not None:
        though = f", though {fired[0].reason}" if fired else ""
        reason = f"not retraining: {held}{though}"
        return Decision(fire=False, trigger=None, reason=reason, detail={**detail, "held": held})
    if not fired:
        why = "; ".join(check.reason for check in checks) or "the policy sets no trigger"
        reason = f"no trigger fired: {why}"
        return Decision(fire=False, trigger=None, reason=reason, detail=detail)
    first, others = fired[0], [check.trigger for check in fired[1:]]
    also = f" ({', '.join(others)} fired as well)" if others else ""
    reason = f"retrain on {first.trigger}: {first.reason}{also}"
    return Decision(fire=True, trigger=first.trigger, reason=reason, detail=detail)


def _held(policy: RetrainPolicy, facts: Facts) -> str | None:
    """Why no trigger may fire now, or None."""
    if facts.running:
        return "a retrain job of the deployment is already queued or running"
    if facts.last_retrain_at is None:
        return None
    until = facts.last_retrain_at + timedelta(seconds=policy.cooldown)
    if facts.now < until:
        return (
            f"cooling down until {_at(until)} ({_duration(policy.cooldown)} after the last "
            f"retrain started at {_at(facts.last_retrain_at)})"
        )
    return None


def _checks(triggers: Triggers, facts: Facts) -> list[_Check]:
    """One check per trigger the policy sets, in `PRECEDENCE` order."""
    checks = []
    if triggers.schedule is not None:
        checks.append(_schedule(triggers.schedule, facts))
    if triggers.drift_psi is not None or triggers.drifted_features is not None:
        checks.append(_drift(triggers, facts))
    if triggers.accuracy_below is not None or triggers.accuracy_drop is not None:
        checks.append(_accuracy(triggers, facts))
    if triggers.new_actuals is not None:
        checks.append(_new_actuals(triggers.new_actuals, facts))
    return checks


def _schedule(expression: str, facts: Facts) -> _Check:
    """Due when a fire time t has checked_at < t <= now: a late check still fires (once, for
    however many times were missed), and no time fires twice."""
    now = facts.now.astimezone(UTC)
    detail: dict[str, JSON] = {"schedule": expression, "checked_at": _iso(facts.checked_at)}
    if facts.checked_at is None:
        upcoming = _next_time(expression, now)
        reason = f"schedule {expression!r} armed by this first check, next due {_at(upcoming)}"
        return _Check(SCHEDULE, False, reason, {**detail, "next": _iso(upcoming)})
    due = _next_time(expression, facts.checked_at.astimezone(UTC))
    if due <= now:
        previous = _at(facts.checked_at)
        reason = f"schedule {expression!r} was due {_at(due)} (previous check {previous})"
        return _Check(SCHEDULE, True, reason, {**detail, "due": _iso(due)})
    reason = f"schedule {expression!r} next due {_at(due)}"
    return _Check(SCHEDULE, False, reason, {**detail, "next": _iso(due)})


def _next_time(expression: str, after: datetime) -> datetime:
    """The first fire time strictly after `after`."""
    upcoming: datetime = croniter(expression, after).get_next(datetime)
    return upcoming


def _drift(triggers: Triggers, facts: Facts) -> _Check:
    drift = facts.drift or {}
    rows = int(drift.get("rows") or 0)
    features: dict[str, dict[str, JSON]] = drift.get("features") or {}
    psi = {name: float(f["psi"]) for name, f in features.items() if f.get("psi") is not None}
    worst = max(psi, key=lambda name: psi[name]) if psi else None
    drifted = sorted(name for name, f in features.items() if f.get("drifted") is True)
    detail: dict[str, JSON] = {
        "rows": rows, "min_rows": triggers.min_rows,
        "max_psi": psi[worst] if worst is not None else None, "max_psi_feature": worst,
        "drift_psi": triggers.drift_psi, "drifted": len(drifted), "drifted_names": drifted,
        "drifted_features": triggers.drifted_features,
    }  # fmt: skip
    if rows < triggers.min_rows:
        reason = (
            f"drift is judged on {rows} logged rows of the champion, fewer than the "
            f"{triggers.min_rows} it needs"
        )
        return _Check(DRIFT, False, reason, detail)
    parts, fired = [], False
    if triggers.drift_psi is not None:
        if worst is None:
            parts.append("no feature has a PSI (no training baseline?)")
        else:
            hit = psi[worst] >= triggers.drift_psi
            fired |= hit
            relation = ">=" if hit else "<"
            parts.append(
                f"the largest PSI, {_n(psi[worst])} of feature {worst!r}, is {relation} "
                f"{_n(triggers.drift_psi)}"
            )
    if triggers.drifted_features is not None:
        hit = len(drifted) >= triggers.drifted_features
        fired |= hit
        names = f" ({', '.join(drifted)})" if drifted else ""
        count = f"{len(drifted)} feature{'' if len(drifted) == 1 else 's'} drifted{names}"
        parts.append(f"{count}, {'>=' if hit else '<'} {triggers.drifted_features}")
    return _Check(DRIFT, fired, f"drift over {rows} rows: {' and '.join(parts)}", detail)


def _accuracy(triggers: Triggers, facts: Facts) -> _Check:
    accuracy, registered = facts.accuracy, facts.registered_accuracy
    drop = registered - accuracy if registered is not None and accuracy is not None else None
    detail: dict[str, JSON] = {
        "accuracy": accuracy, "actuals": facts.actuals, "min_rows": triggers.min_rows,
        "accuracy_below": triggers.accuracy_below, "registered_accuracy": registered,
        "drop": drop, "accuracy_drop": triggers.accuracy_drop,
    }  # fmt: skip
    if accuracy is None or facts.actuals < triggers.min_rows:
        reason = (
            f"accuracy is judged on {facts.actuals} actuals of the champion, fewer than the "
            f"{triggers.min_rows} it needs"
        )
        return _Check(ACCURACY, False, reason, detail)
    parts, fired = [], False
    if triggers.accuracy_below is not None:
        hit = accuracy < triggers.accuracy_below
        fired |= hit
        parts.append(f"is {'<' if hit else '>='} {_n(triggers.accuracy_below)}")
    if triggers.accuracy_drop is not None:
        if drop is None:
            parts.append("has no registered accuracy to compare with")
        else:
            hit = drop - triggers.accuracy_drop > TOLERANCE
            fired |= hit
            side = "below" if drop >= 0 else "above"
            parts.append(
                f"is {_n(abs(drop))} {side} the registered {_n(registered)}, "
                f"{'>' if hit else '<='} {_n(triggers.accuracy_drop)}"
            )
    live = f"live accuracy {_n(accuracy)} over {facts.actuals} actuals"
    return _Check(ACCURACY, fired, f"{live} {' and '.join(parts)}", detail)


def _new_actuals(threshold: int, facts: Facts) -> _Check:
    hit = facts.new_actuals >= threshold
    relation = ">=" if hit else "<"
    reason = f"{facts.new_actuals} new actuals since the last retrain, {relation} {threshold}"
    detail: dict[str, JSON] = {"new_actuals": facts.new_actuals, "threshold": threshold}
    return _Check(NEW_ACTUALS, hit, reason, detail)


# -- the facts ----------------------------------------------------------------------------


def gather(
    monitor: Monitor,
    registry: Registry,
    db: Database,
    deployment: str,
    policy: RetrainPolicy,
    state: Mapping[str, JSON],
    now: datetime,
) -> Facts:
    """The facts `decide` needs for the deployment's champion. Drift, accuracy and new
    actuals read the prediction log, so each is only read when a trigger needs it."""
    triggers = policy.triggers
    with db.read() as conn:
        record = md.get_deployment(conn, deployment)
        champion = md.get_revision(conn, record, record.active_revision).config.champion
        latest = jobs.latest_job(conn, deployment)
        running = jobs.active_job(conn, deployment) is not None
    version = registry.get_version(record.model, champion)
    last_retrain_at = latest.created_at if latest is not None else None
    window = Window.parse(window_text(triggers.window), now=now)
    wants_drift = triggers.drift_psi is not None or triggers.drifted_features is not None
    wants_accuracy = triggers.accuracy_below is not None or triggers.accuracy_drop is not None
    drift: dict[str, JSON] | None = None
    groups: list[GroupStats] = []
    if wants_drift:
        drift = monitor.drift(deployment, champion, since=window.since, until=window.until)
    if wants_accuracy:  # the summary's accuracy and actuals; no full metric report
        groups = monitor.groups(
            deployment, since=window.since, until=window.until, performance=False
        )
    accuracy, actuals = _champion_accuracy(groups, champion) if wants_accuracy else (None, 0)
    new_actuals = 0
    if triggers.new_actuals is not None:
        since = version.created_at
        if last_retrain_at is not None:
            since = max(since, last_retrain_at)
        new_actuals = count_actuals(monitor.root, deployment, since=since, until=now)
    registered = version.metrics.get("accuracy")
    return Facts(
        now=now, checked_at=_checked_at(state), last_retrain_at=last_retrain_at,
        running=running, drift=drift, accuracy=accuracy, actuals=actuals,
        registered_accuracy=float(registered) if registered is not None else None,
        new_actuals=new_actuals,
    )  # fmt: skip


def window_text(seconds: float) -> str:
    """`seconds` as a `Window.parse` window: exact in the largest unit that divides it
    (`86400.0` -> `1d`, `5400` -> `90m`), rounded only past six digits of seconds."""
    whole = max(round(seconds), 1)
    for unit, size in _WINDOW_UNITS:
        if whole % size == 0 and whole // size <= _WINDOW_MAX:
            return f"{whole // size}{unit}"
    for unit, size in reversed(_WINDOW_UNITS):
        if round(whole / size) <= _WINDOW_MAX:
            return f"{round(whole / size)}{unit}"
    return f"{_WINDOW_MAX}d"


def count_actuals(root: Path, deployment: str, *, since: datetime, until: datetime) -> int:
    """Distinct prediction ids whose actual was received in (since, until]. Reads three
    columns, unlike `LogReader.graded`, which returns every graded answer."""
    attempt = 1
    while True:
        files = segments.live_files(root, ACTUALS, deployment, since=since, until=until)
        if not files:
            return 0
        values = {
            "files": [str(f) for f in files],
            "deployment": deployment,
            "since": since,
            "until": until,
        }
        try:
            with duckdb.connect() as con:
                row = con.execute(_NEW_ACTUALS, values).fetchone()
            return int(row[0]) if row is not None else 0
        except duckdb.IOException as error:  # a file compacted away meanwhile: list again
            if attempt == ATTEMPTS:
                raise StoreUnavailable(
                    f"cannot read the actuals log of {deployment}: {error}"
                ) from error
            attempt += 1


def _champion_accuracy(groups: list[GroupStats], champion: int) -> tuple[float | None, int]:
    """Accuracy and actuals of the champion version answering as champion (as gates read
    them)."""
    group = find_group(groups, champion, "champion")
    return (None, 0) if group is None else (group.accuracy, group.actuals)


def _checked_at(state: Mapping[str, JSON]) -> datetime | None:
    """The previous evaluation from the deployment's retrain state; an unreadable one counts
    as none (the schedule re-arms rather than the loop failing on every check)."""
    value = state.get("checked_at")
    if isinstance(value, datetime):
        return md.aware(value)
    if not isinstance(value, str):
        return None
    try:
        return md.aware(datetime.fromisoformat(value))
    except ValueError:
        return None


# -- wording ------------------------------------------------------------------------------


def _n(value: float | None) -> str:
    return "none" if value is None else f"{value:.4g}"


def _iso(when: datetime | None) -> str | None:
    return when.astimezone(UTC).isoformat() if when is not None else None


def _at(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(seconds: float) -> str:
    for unit, size in _WINDOW_UNITS:
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"
