"""The routing table: each deployment's active revision, swapped atomically on change."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from turnout.gateway.pool import ModelPool
from turnout.gateway.router import Router
from turnout.registry.servable import Servable
from turnout.store.records import DeploymentRecord, RevisionRecord, RoutingConfig
from turnout.types import JSON

log = logging.getLogger("turnout.gateway")

Snapshot = list[tuple[DeploymentRecord, RevisionRecord]]
CHANGE_WINDOW = timedelta(seconds=30)
"""Deployments changed this long before the newest change seen are read again at every
refresh: a change committed late, or stamped by a machine whose clock lags, is not missed."""


@dataclass(frozen=True, slots=True)
class Route:
    """One deployment as this worker serves it; never mutated, only replaced."""

    deployment: str
    model: str
    revision: int
    config: RoutingConfig
    router: Router


class RoutingTable:
    """Holds `dict[name, Route]`; a refresh builds a new dict and swaps the reference."""

    def __init__(
        self,
        pool: ModelPool,
        *,
        fingerprint: Callable[[], object],
        snapshot: Callable[[datetime | None], Snapshot],
        interval_s: float,
        on_unload: Callable[[set[tuple[str, int]]], Awaitable[None]],
        prioritize: Callable[[set[tuple[str, int]]], None] = lambda shadow_only: None,
        warm: Callable[[Servable], Awaitable[None]] | None = None,
        on_routes: Callable[[dict[str, Route]], Awaitable[None]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pool = pool
        self._fingerprint = fingerprint
        self._snapshot = snapshot
        self._interval_s = interval_s
        self._on_unload = on_unload
        self._prioritize = prioritize
        """Told which versions only shadow, so their model code can run at low priority."""
        self._warm = warm
        """Loads a version where models run before a change routes to it (model host)."""
        self._on_routes = on_routes
        """Told the whole table after each refresh (what to pin, isolate, import ahead)."""
        self.routes: dict[str, Route] = {}
        self.served: dict[str, int] = {}
        """Revision per deployment whose versions are loaded and warm here (acknowledged)."""
        self.errors: dict[str, dict[str, JSON]] = {}
        """Deployments whose newest revision could not be served here: revision and reason."""
        self.changed = asyncio.Event()
        self._listeners: set[asyncio.Event] = set()
        self._seen: object = None
        self._refreshing: asyncio.Future[None] | None = None
        self._rows: dict[str, tuple[DeploymentRecord, RevisionRecord]] = {}
        self._newest = datetime.min.replace(tzinfo=UTC)
        self._poked = asyncio.Event()
        self._clock = clock
        self._unknown_at = -float("inf")
        """When an unknown name last made the table look at the DB."""
        self.ready = False

    def poke(self) -> None:
        """A change was just written: look now instead of at the next poll."""
        self._poked.set()

    def get(self, name: str) -> Route | None:
        return self.routes.get(name)

    async def lookup(self, name: str) -> Route | None:
        """The route; a name not known yet makes the table look at the DB at once, but at
        most once per poll interval, so requests for made-up names cost no DB round trip."""
        route = self.routes.get(name)
        if route is None and self._clock() - self._unknown_at >= self._interval_s:
            self._unknown_at = self._clock()
            published = asyncio.Event()
            self._listeners.add(published)
            refreshing = asyncio.ensure_future(self.refresh(force=True))
            waiting = asyncio.ensure_future(published.wait())
            try:  # a new deployment shows up before its versions finish loading
                await asyncio.wait({refreshing, waiting}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                self._listeners.discard(published)
                waiting.cancel()
            if refreshing.done():
                refreshing.result()
            route = self.routes.get(name)
        return route

    async def refresh(self, *, force: bool = False) -> None:
        """Reload routes if the DB changed; concurrent callers share one refresh."""
        if self._refreshing is None:
            self._refreshing = asyncio.ensure_future(self._refresh(force))
            self._refreshing.add_done_callback(lambda _: setattr(self, "_refreshing", None))
        await asyncio.shield(self._refreshing)

    async def _refresh(self, force: bool) -> None:
        seen = await asyncio.to_thread(self._fingerprint)
        if seen == self._seen and not force:
            return
        fresh = await self._read(seen)
        # A new deployment has no earlier route to protect: publish it now, so callers get
        # its deadline, failover and fallback while its versions load, instead of waiting.
        self._prioritize(_shadow_only(fresh.values()))
        previous = self.routes
        new = {name: route for name, route in fresh.items() if name not in previous}
        if new:
            self.routes = {**previous, **new}
            for listener in self._listeners:
                listener.set()
        routes = await self._preload(fresh, previous)
        self.routes = routes
        self.served = {name: route.revision for name, route in routes.items()}
        self._seen = None if self.errors else seen  # retry failed loads on the next poll
        self.ready = True
        needed = {(r.model, v) for r in routes.values() for v in r.config.versions()}
        self.pool.keep_only(needed)
        await self._on_unload(needed)
        if self._on_routes is not None:
            await self._on_routes(routes)
        self.changed.set()

    async def _read(self, seen: object) -> dict[str, Route]:
        """The routes as the DB has them now. Only deployments changed lately are read, so a
        refresh costs what changed, not how many deployments there are; when the result does
        not add up to the fingerprint (a deletion, a change older than the window), all are."""
        rows = dict(self._rows)
        since = self._newest - CHANGE_WINDOW if self._rows else None
        for dep, rev in await asyncio.to_thread(self._snapshot, since):
            rows[dep.name] = (dep, rev)
        if since is not None and _fingerprint_of(rows) != seen:
            rows = {
                dep.name: (dep, rev) for dep, rev in await asyncio.to_thread(self._snapshot, None)
            }
        self._rows = rows
        self._newest = max((dep.updated_at for dep, _ in rows.values()), default=self._newest)
        previous = self.routes
        fresh = {}
        for name, (dep, rev) in rows.items():
            route = previous.get(name)
            if route is None or route.revision != rev.revision or route.config != rev.config:
                route = Route(name, dep.model, rev.revision, rev.config, Router.of(rev.config))
            fresh[name] = route
        return fresh

    async def _preload(
        self, fresh: dict[str, Route], previous: dict[str, Route]
    ) -> dict[str, Route]:
        """Load and warm what each changed route needs before it goes live.

        A route whose versions cannot load is not switched to: the deployment keeps its
        previous route here, and the error is reported so the change is not acknowledged.
        """
        changed = {n: r for n, r in fresh.items() if previous.get(n) != r}
        keys = sorted({(r.model, v) for r in changed.values() for v in r.config.versions()})
        results = await asyncio.gather(
            *(self.pool.get(m, v) for m, v in keys), return_exceptions=True
        )
        failures = {
            key: f"{key[0]}:{key[1]}: {getattr(result, 'message', result)}"
            for key, result in zip(keys, results, strict=True)
            if isinstance(result, BaseException)
        }
        if self._warm is not None:
            # Load ahead what a change (not a first sight: start-up loads on demand) or a
            # pinned champion needs, so the switch finds it warm.
            ahead = {
                (r.model, v)
                for n, r in changed.items()
                if n in previous
                for v in r.config.versions()
            }
            ahead |= {(r.model, r.config.champion) for r in fresh.values() if r.config.keep_loaded}
            ahead = {key for key in ahead if key not in failures}
            warming = sorted(ahead)
            warmed = await asyncio.gather(
                *(self._warm_one(m, v) for m, v in warming), return_exceptions=True
            )
            for key, result in zip(warming, warmed, strict=True):
                if isinstance(result, BaseException):
                    failures[key] = f"{key[0]}:{key[1]}: {getattr(result, 'message', result)}"
        routes = dict(fresh)
        for name, route in changed.items():
            problems = [
                failures[(route.model, v)]
                for v in route.config.versions()
                if (route.model, v) in failures
            ]
            if not problems:
                self.errors.pop(name, None)
                continue
            message = f"revision {route.revision} not served: " + "; ".join(problems)
            self.errors[name] = {"revision": route.revision, "message": message}
            log.error("%s: %s", name, message)
            routes[name] = previous.get(name) or _without(route, failures)
        for name in list(self.errors):
            if name not in fresh:
                del self.errors[name]
        return routes

    async def _warm_one(self, model: str, version: int) -> None:
        assert self._warm is not None
        await self._warm(await self.pool.get(model, version))

    async def run(self) -> None:
        """Poll for routing changes until cancelled."""
        while True:
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception:  # keep serving the last good table whatever the DB does
                log.exception("routing refresh failed; serving the previous table")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poked.wait(), self._interval_s)
            self._poked.clear()


def _fingerprint_of(rows: dict[str, tuple[DeploymentRecord, RevisionRecord]]) -> object:
    """What `metadata.routing_fingerprint` says of the DB, computed from rows in hand."""
    return (
        len(rows),
        sum(dep.active_revision for dep, _ in rows.values()),
        max((dep.id for dep, _ in rows.values()), default=0),
        max((dep.updated_at.timestamp() for dep, _ in rows.values()), default=0.0),
    )


def _without(route: Route, failures: dict[tuple[str, int], str]) -> Route:
    """A first-seen route minus the challengers and shadows that failed to load here, so
    only the champion's share can fail (it has no previous route to fall back on)."""
    failed = {v for m, v in failures if m == route.model}
    config = replace(
        route.config,
        challengers={v: p for v, p in route.config.challengers.items() if v not in failed},
        shadows={v: p for v, p in route.config.shadows.items() if v not in failed},
    )
    return replace(route, config=config, router=Router.of(config))


def _shadow_only(routes: Iterable[Route]) -> set[tuple[str, int]]:
    """Versions that no route needs for live answers, only as shadows."""
    shadows = {(r.model, v) for r in routes for v in r.config.shadows}
    live = {(r.model, v) for r in routes for v in r.config.versions() - set(r.config.shadows)}
    return shadows - live
