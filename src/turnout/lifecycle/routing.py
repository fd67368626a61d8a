"""Changes to what answers behind a deployment: split traffic, promote, roll back.

Every change appends revision N+1 (never edits one); the gateways pick it up, load and
warm what it needs, swap atomically and acknowledge. A version that cannot load or warm
up here is refused before any revision is written.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import timedelta

import orjson

from turnout.errors import BadRequest, Conflict, InvalidArtifact, TurnoutError
from turnout.lifecycle import shares
from turnout.lifecycle.deployments import MAX_TIMEOUT_MS, check_share
from turnout.lifecycle.retire import check_routable
from turnout.registry.service import Registry
from turnout.store import metadata as md
from turnout.store.db import Database
from turnout.store.records import RevisionRecord, RoutingConfig, VersionRecord, WorkerRecord
from turnout.types import JSON

WORKER_ALIVE_S = 5.0
STICKY_SOURCES = ("header", "field")


@dataclass(frozen=True, kw_only=True)
class RouteChange:
    deployment: str
    challengers: dict[int, float] = field(default_factory=dict)
    shadows: dict[int, float] = field(default_factory=dict)
    sticky_key: str | None = None
    clear: bool = False
    base_revision: int | None = None
    """When given, the change applies only if the active revision is still this one."""
    log_payloads: float | None = None
    """Share of requests whose inputs and outputs are logged; None keeps the current one."""
    actor: str = "local"


@dataclass(frozen=True, slots=True)
class Applied:
    """A new revision and whether every live gateway worker serves it yet."""

    revision: RevisionRecord
    acknowledged: bool
    workers: list[WorkerRecord]


class Routing:
    def __init__(
        self,
        db: Database,
        registry: Registry,
        *,
        ack_timeout_s: float = 30.0,
        warm_up: Callable[[VersionRecord], None] | None = None,
        poke: Callable[[], None] = lambda: None,
    ) -> None:
        self.db = db
        self.registry = registry
        self.ack_timeout_s = ack_timeout_s
        self._warm_up = warm_up or self._warm_up_here
        """Proves a version loads and answers its examples (where models run), or raises."""
        self._poke = poke
        """Tells the gateways a change was written, so they look before their next poll."""

    # -- changes ----------------------------------------------------------------------------

    def route(self, change: RouteChange) -> Applied:
        current = self._active(change.deployment)
        if change.base_revision is not None and current.revision != change.base_revision:
            raise Conflict(
                f"{change.deployment!r} moved to revision {current.revision} meanwhile; "
                "nothing was changed"
            )
        config = current.config
        if change.clear:
            config = replace(config, challengers={}, shadows={}, sticky_key=None)
        if not (
            change.clear
            or change.challengers
            or change.shadows
            or change.sticky_key
            or change.log_payloads is not None
        ):
            raise BadRequest(
                "nothing to change: give --challenger, --shadow, --sticky, --log-payloads "
                "or --clear"
            )
        if change.log_payloads is not None:
            check_share(change.log_payloads)
            config = replace(config, log_payloads=change.log_payloads)
        if change.challengers:
            config = replace(config, challengers=dict(change.challengers))
        if change.shadows:
            config = replace(config, shadows=dict(change.shadows))
        if change.sticky_key is not None:
            config = replace(config, sticky_key=_sticky(change.sticky_key))
        self._check_split(config)
        model = self._model_of(change.deployment)
        for version in set(change.challengers) | set(change.shadows):
            self._check_servable(model, version)
        parts = [f"{v} at {p:g}%" for v, p in sorted(config.challengers.items())]
        shadows = [f"{v} ({p:g}%)" for v, p in sorted(config.shadows.items())]
        reason = "route: " + ("challengers " + ", ".join(parts) if parts else "champion only")
        if shadows:
            reason += "; shadows " + ", ".join(shadows)
        if change.log_payloads is not None:
            reason += f"; payloads logged for {change.log_payloads:.0%} of requests"
        return self._apply(current, config, reason=reason, actor=change.actor)

    def promote(self, deployment: str, version: int, *, actor: str) -> Applied:
        current = self._active(deployment)
        config = current.config
        if version == config.champion:
            raise Conflict(f"version {version} is already the champion of {deployment!r}")
        model = self._model_of(deployment)
        self._check_servable(model, version)
        promoted = replace(
            config,
            champion=version,
            standby=config.champion,
            challengers={v: p for v, p in config.challengers.items() if v != version},
            shadows={v: p for v, p in config.shadows.items() if v != version},
            failover=None if config.failover == version else config.failover,
        )
        reason = f"promote {version} (champion was {config.champion}, kept as standby)"
        return self._apply(current, promoted, reason=reason, actor=actor)

    def rollback(self, deployment: str, *, to_revision: int | None, actor: str) -> Applied:
        current = self._active(deployment)
        target = current.revision - 1 if to_revision is None else to_revision
        if current.revision == 1:
            raise Conflict(
                f"{deployment!r} is at its first revision; there is nothing to roll back to"
            )
        if not 1 <= target < current.revision:
            raise BadRequest(
                f"cannot roll back {deployment!r} to revision {target}: "
                f"choose one of 1..{current.revision - 1}"
            )
        with self.db.read() as conn:
            earlier = md.get_revision(conn, md.get_deployment(conn, deployment), target)
        model = self._model_of(deployment)
        for version in earlier.config.versions():
            self.registry.verify(self.registry.get_version(model, version))
        config = earlier.config
        if current.config.champion not in config.versions():
            # the champion rolled back from stays loaded, so undoing the rollback is instant too
            config = replace(config, standby=current.config.champion)
        reason = f"rollback to revision {target}"
        return self._apply(current, config, reason=reason, actor=actor)

    def configure(
        self,
        deployment: str,
        *,
        timeout_ms: int | None,
        failover: int | None,
        fallback: JSON,
        has_fallback: bool,
        log_payloads: float,
        actor: str,
    ) -> Applied:
        """Change the deadline, failover version, fallback value and payload logging; what
        answers (champion, challengers, shadows) stays as it is."""
        current = self._active(deployment)
        if timeout_ms is not None and not 0 < timeout_ms <= MAX_TIMEOUT_MS:
            raise BadRequest(f"timeout_ms must be between 1 and {MAX_TIMEOUT_MS}")
        if failover is not None and failover == current.config.champion:
            raise BadRequest(
                f"the failover version must differ from the champion ({failover} is the "
                f"champion of {deployment!r})"
            )
        check_share(log_payloads)
        config = replace(
            current.config,
            timeout_ms=timeout_ms,
            failover=failover,
            fallback=fallback if has_fallback else None,
            has_fallback=has_fallback,
            log_payloads=log_payloads,
        )
        changed = settings_changed(current.config, config)
        if not changed:
            raise BadRequest(f"nothing to change: {deployment!r} already has these settings")
        if failover is not None and "failover" in changed:
            self._check_servable(self._model_of(deployment), failover)
        reason = "configure: " + ", ".join(_describe(config, name) for name in changed)
        return self._apply(current, config, reason=reason, actor=actor)

    # -- helpers ----------------------------------------------------------------------------

    def _active(self, deployment: str) -> RevisionRecord:
        with self.db.read() as conn:
            record = md.get_deployment(conn, deployment)
            return md.get_revision(conn, record, record.active_revision)

    def _model_of(self, deployment: str) -> str:
        with self.db.read() as conn:
            return md.get_deployment(conn, deployment).model

    def _check_split(self, config: RoutingConfig) -> None:
        for version, percent in config.challengers.items():
            if version == config.champion:
                raise BadRequest(
                    f"version {version} is the champion; it cannot also be a challenger"
                )
            _check_share("challenger", version, shares.challenger_problem(percent))
        total = sum(config.challengers.values())
        if total >= 100:
            raise BadRequest(
                f"challenger shares sum to {total:g}%; they must leave the champion traffic (< 100)"
            )
        for version, percent in config.shadows.items():
            if version == config.champion:
                raise BadRequest(f"version {version} is the champion; it cannot also be a shadow")
            if version in config.challengers:
                raise BadRequest(f"version {version} cannot be both challenger and shadow")
            _check_share("shadow", version, shares.shadow_problem(percent))

    def _warm_up_here(self, record: VersionRecord) -> None:
        self.registry.load(record).warm()

    def _check_servable(self, model: str, version: int) -> None:
        """Load and warm the version before any revision names it; refuse it otherwise."""
        record = self.registry.get_version(model, version)
        check_routable(record)
        try:
            self._warm_up(record)
        except TurnoutError as exc:
            raise InvalidArtifact(f"version {record.ref} cannot serve: {exc.message}") from exc
        except Exception as exc:  # user model code may raise anything while warming up
            raise InvalidArtifact(
                f"version {record.ref} failed to warm up: {type(exc).__name__}: {exc}"
            ) from exc

    def _apply(
        self, base: RevisionRecord, config: RoutingConfig, *, reason: str, actor: str
    ) -> Applied:
        """Write `config` as the revision after `base`, unless another change got there first
        (it was checked against `base`; written on top of a newer one it would undo that)."""
        deployment = base.deployment
        with self.db.write() as conn:
            record = md.get_deployment(conn, deployment)
            if record.active_revision != base.revision:
                raise Conflict(
                    f"{deployment!r} moved from revision {base.revision} to "
                    f"{record.active_revision} while this change was checked; "
                    "look at the new revision and retry"
                )
            revision = md.add_revision(conn, record, config, reason=reason, actor=actor)
            md.audit(
                conn,
                actor=actor,
                action="deployment.revise",
                target=deployment,
                detail={
                    "revision": revision.revision,
                    "reason": reason,
                    "config": config.to_dict(),
                },
            )
        acknowledged, workers = self.wait_for_workers(deployment, revision.revision)
        return Applied(revision, acknowledged, workers)

    def active(self, deployment: str) -> RevisionRecord:
        """The deployment's active revision."""
        return self._active(deployment)

    def current(self, deployment: str) -> RoutingConfig:
        """The routing of the deployment's active revision."""
        return self._active(deployment).config

    def live_workers(self, *, light: bool = False) -> list[WorkerRecord]:
        """Workers that beat lately; `light`: only what acknowledgements need."""
        with self.db.read() as conn:
            alive_since = md.now() - timedelta(seconds=WORKER_ALIVE_S)
            return md.list_workers(conn, alive_since=alive_since, light=light)

    def wait_for_workers(self, deployment: str, revision: int) -> tuple[bool, list[WorkerRecord]]:
        """Wait until every live gateway worker reports serving `revision` (or newer)."""
        with contextlib.suppress(TurnoutError):  # they still find it at their next poll
            self._poke()
        deadline = time.monotonic() + self.ack_timeout_s
        while True:
            workers = self.live_workers(light=True)
            refused = [w for w in workers if _refused(w, deployment, revision)]
            if not refused and all(w.revisions.get(deployment, 0) >= revision for w in workers):
                return True, workers
            if refused or time.monotonic() > deadline:
                return False, workers
            time.sleep(0.05)


SETTINGS = ("timeout_ms", "failover", "fallback", "log_payloads")
"""What `configure` changes: everything in a revision but who answers."""


def settings_changed(old: RoutingConfig, new: RoutingConfig) -> list[str]:
    """Names of the SETTINGS that differ between two configs."""
    return [name for name in SETTINGS if _setting(old, name) != _setting(new, name)]


def _setting(config: RoutingConfig, name: str) -> JSON:
    if name != "fallback":
        return getattr(config, name)
    if not config.has_fallback:
        return None
    # compared as JSON text: 0, 0.0 and false are different fallback values
    return orjson.dumps(config.fallback, option=orjson.OPT_SORT_KEYS)


def _describe(config: RoutingConfig, name: str) -> str:
    if name == "timeout_ms":
        return "no timeout" if config.timeout_ms is None else f"timeout {config.timeout_ms} ms"
    if name == "failover":
        return "no failover" if config.failover is None else f"failover {config.failover}"
    if name == "fallback":
        if not config.has_fallback:
            return "no fallback"
        return f"fallback {orjson.dumps(config.fallback).decode()}"
    return f"payloads logged for {config.log_payloads:.0%} of requests"


def _check_share(role: str, version: int, problem: str | None) -> None:
    if problem is not None:
        raise BadRequest(f"{role} share for version {version}: {problem}")


def _refused(worker: WorkerRecord, deployment: str, revision: int) -> bool:
    """Whether the worker reports it cannot serve `revision` (or a newer one).

    A worker keeps reporting its last failure until its next refresh, so an error about an
    older revision is stale news (say, the failed change a rollback is undoing), not a
    refusal of this one.
    """
    error = worker.errors.get(deployment)
    return error is not None and int(error.get("revision", 0)) >= revision


def _sticky(key: str) -> str:
    source, sep, name = key.partition(":")
    if not sep or source not in STICKY_SOURCES or not name:
        raise BadRequest(f"sticky key {key!r} must be header:NAME or field:NAME")
    return f"{source}:{name.lower() if source == 'header' else name}"
