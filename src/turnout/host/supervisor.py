"""The model host's supervisor: places models on runners, within a memory budget.

Gateway workers (and the API, for registration checks) talk to it over one unix socket. It
forks runners from the template, loads each model where there is room (evicting the least
recently used idle ones past the budget), adds replicas for hot models, watches every
runner for hangs and deaths, and moves a model that took a shared runner down into a runner
of its own. Usage (by `turnout serve`): python -m turnout.host.supervisor SOCKET
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from turnout.errors import ModelUnavailable, RunnerRestarting, TurnoutError
from turnout.host import wire
from turnout.host.config import HostConfig, host_config
from turnout.host.placement import (
    Isolation,
    Resident,
    accounted_bytes,
    choose_victims,
    code_bearing,
    isolation_for,
    least_loaded,
)
from turnout.host.priority import CAN_RAISE, LOW_PRIORITY, LOW_PRIORITY_PATIENCE, set_priority
from turnout.host.slot import Slot
from turnout.host.staging import Staging
from turnout.host.template_process import Template
from turnout.store.artifacts import open_artifact_store

log = logging.getLogger("turnout.host")

BACKOFF_S = (0.05, 0.2, 0.5, 1.0, 2.0, 5.0)
WATCH_INTERVAL_S = 0.05
SWEEP_INTERVAL_S = 5.0
IDLE_DEDICATED_S = 60.0
"""A dedicated runner whose model no revision routes is stopped after this long unused."""
SCALE_IN_CALLS_PER_S = 2.0
"""An extra replica is removed when its model gets fewer calls than this per second."""
STATS_TIMEOUT_S = 0.5
COLD_SAMPLES = 256


@dataclass(eq=False)
class RunnerState:
    id: int
    pid: int
    isolation: Isolation
    socket: Path
    slot: Slot
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    pending: dict[int, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    """Control requests awaiting their reply, by id (the runner answers in order, but a
    request given up on must not have its late reply taken for the next one's)."""
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    reading: asyncio.Task[None] | None = None
    models: dict[str, int] = field(default_factory=dict)
    """Loaded models and the bytes each counts."""
    stats: dict[str, tuple[int, float]] = field(default_factory=dict)
    """Per model: calls and last use (monotonic), as the runner last reported."""
    alive: bool = True
    started: float = field(default_factory=time.monotonic)
    low_priority: bool = False

    @property
    def memory_bytes(self) -> int:
        return sum(self.models.values())


@dataclass(eq=False)
class ModelState:
    key: str
    record: dict[str, Any]
    runners: set[int] = field(default_factory=set)
    memory_bytes: int | None = None
    misses: int = 0
    loads: int = 0
    evictions: int = 0
    failures: int = 0
    not_before: float = 0.0
    last_error: str | None = None
    isolated: bool = False
    """Took a shared runner down once: from now on it runs alone."""
    cold_ms: deque[float] = field(default_factory=lambda: deque(maxlen=COLD_SAMPLES))
    loading: asyncio.Future[None] | None = None
    scaling: bool = False
    calls_seen: int = 0

    @property
    def files_bytes(self) -> int:
        return sum(int(f["size"]) for f in self.record["artifact"]["files"])

    @property
    def paths(self) -> list[str]:
        return [str(f["path"]) for f in self.record["artifact"]["files"]]


class RunnerDied(ModelUnavailable):
    pass


class Supervisor:
    def __init__(self, config: HostConfig) -> None:
        self.config = config
        self.template = Template(config.env, on_exit=self._exited)
        self.staging = Staging(
            config.run_dir / "stage",
            open_artifact_store(config.artifact_root),
            uid=config.runner_uid,
            gid=config.runner_gid,
        )
        self.runners: dict[int, RunnerState] = {}
        self.models: dict[str, ModelState] = {}
        self._ids = itertools.count(1)
        self.routed: set[str] = set()
        self.pinned: set[str] = set()
        self.overrides: dict[str, Isolation] = {}
        self.max_replicas: dict[str, int] = {}
        self.shadow_only: set[str] = set()
        """Versions every revision routes to as a shadow only (never a live answer)."""
        self.flavors: set[str] = set()
        self.restarts = 0
        self.evictions = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._checker: RunnerState | None = None
        """Checks registrations of built-in formats; kept warm between them."""
        self._spare: RunnerState | None = None
        """Forked ahead for the next code-bearing registration check."""
        self._checker_lock = asyncio.Lock()
        self._room = asyncio.Lock()
        self._pool_lock = asyncio.Lock()
        """Held while making room for a load, so two loads do not both count the same room."""
        self._reserved = 0
        """Bytes set aside for loads under way."""
        self._ops = {
            "place": self._op_place,
            "scale": self._op_scale,
            "routed": self._op_routed,
            "status": self._op_status,
            "describe": self._op_describe,
            "ping": self._op_ping,
            "watch": self._op_ping,
            "changed": self._op_changed,
        }
        self._watchers: dict[asyncio.StreamWriter, asyncio.Lock] = {}

    # -- life ------------------------------------------------------------------------------

    async def run(self, socket_path: Path, *, parent: int | None = None) -> None:
        await self.template.start()
        server = await asyncio.start_unix_server(self._client, path=str(socket_path))
        os.chmod(socket_path, 0o600)
        self._spawn(self._watch(parent))
        self._spawn(self._sweep())
        async with server:
            await server.serve_forever()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for runner in list(self.runners.values()):
            self._kill(runner)
        await self.template.stop()

    # -- clients ---------------------------------------------------------------------------

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        lock = asyncio.Lock()
        try:
            while True:
                header, _ = await wire.read_async(reader)
                if header.get("op") == "watch":  # this client hears of routing changes
                    self._watchers[writer] = lock
                self._spawn(self._serve(header, writer, lock))
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            self._watchers.pop(writer, None)
            writer.close()

    async def _serve(
        self, header: dict[str, Any], writer: asyncio.StreamWriter, lock: asyncio.Lock
    ) -> None:
        op = self._ops.get(str(header.get("op")))
        try:
            if op is None:
                raise ModelUnavailable(f"unknown op {header.get('op')!r}")
            reply = {"ok": True, **await op(header)}
        except TurnoutError as exc:
            reply = {
                "ok": False,
                "error": exc.message,
                "status": int(exc.status),
                "restarting": isinstance(exc, RunnerRestarting),
            }
        except Exception as exc:  # never let one request end the connection
            log.exception("host request %s failed", header.get("op"))
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "status": 503}
        async with lock:
            with contextlib.suppress(ConnectionError):
                writer.write(wire.encode({"id": header.get("id"), **reply}, []))
                await writer.drain()

    async def _op_ping(self, header: dict[str, Any]) -> dict[str, Any]:
        return {}

    async def _op_changed(self, header: dict[str, Any]) -> dict[str, Any]:
        """A routing change was written: every watching gateway worker looks at once rather
        than at its next poll."""
        event = wire.encode({"id": 0, "event": "routing"}, [])
        for writer, lock in list(self._watchers.items()):
            async with lock:
                with contextlib.suppress(ConnectionError):
                    writer.write(event)
                    await writer.drain()
        return {}

    async def _op_place(self, header: dict[str, Any]) -> dict[str, Any]:
        model = self._model(header)
        await self.place(model)
        return {"runners": self._addresses(model)}

    async def _op_scale(self, header: dict[str, Any]) -> dict[str, Any]:
        model = self._model(header)
        await self.scale(model)
        return {"runners": self._addresses(model)}

    async def _op_routed(self, header: dict[str, Any]) -> dict[str, Any]:
        self.routed = set(header.get("keys", []))
        self.pinned = set(header.get("pinned", []))
        self.overrides = {k: Isolation(v) for k, v in header.get("isolation", {}).items()}
        self.max_replicas = {k: int(v) for k, v in header.get("max_replicas", {}).items()}
        self.shadow_only = set(header.get("shadow_only", []))
        for runner in self.runners.values():
            self._prioritize(runner)
        flavors = set(header.get("flavors", []))
        if flavors - self.flavors:
            self.flavors |= flavors
            await self.template.prepare(sorted(self.flavors))
        for key, record in header.get("records", {}).items():
            if key in self.pinned:
                model = self.models.setdefault(key, ModelState(key, record))
                self._spawn(self._quietly(self.place(model)))
        return {}

    async def _op_status(self, header: dict[str, Any]) -> dict[str, Any]:
        await self._refresh_stats()
        return self.status()

    async def _op_describe(self, header: dict[str, Any]) -> dict[str, Any]:
        """A registration check. Built-in formats go to a warm checker runner that stays up
        (it holds nothing but the models it checks); code-bearing ones each get a runner of
        their own, taken from a spare forked ahead, ended right after."""
        inspection = dict(header["inspection"])
        flavor = str(inspection["flavor"])
        code = code_bearing(flavor, _artifact_paths(Path(inspection["source"])))
        runner = await (self._spare_runner(flavor) if code else self._checker_runner(flavor))
        timeout_s = self.config.check_timeout_s
        staged = []
        for field_ in ("source", "training_data"):
            if inspection.get(field_):
                copied = await asyncio.to_thread(self.staging.copy, Path(inspection[field_]))
                inspection[field_] = str(copied)
                staged.append(copied)
        try:
            reply = await self._ask(
                runner, {"op": "describe", "inspection": inspection}, timeout_s=timeout_s
            )
        except TimeoutError:
            raise CheckFailed(
                f"the model did not finish loading and predicting its example rows within "
                f"{timeout_s:g} s (TURNOUT_REGISTER_TIMEOUT_MS)"
            ) from None
        except RunnerDied:
            code_ = await self.template.exit_code(runner.pid)
            raise CheckFailed(
                f"the model's code ended its process (exit code {code_}) while it was loaded "
                "and checked"
            ) from None
        finally:
            if code:
                self._retire(runner)
            for path in staged:
                await asyncio.to_thread(self.staging.remove, path)
        if not reply.get("ok"):
            raise CheckFailed(str(reply.get("error")), status=int(reply.get("status", 422)))
        return {"description": reply["description"]}

    async def _checker_runner(self, flavor: str) -> RunnerState:
        async with self._checker_lock:
            checker = self._checker
            if checker is None or not checker.alive:
                checker = self._checker = await self._new_runner(
                    Isolation.CHECK, sorted(self.flavors | {flavor})
                )
        return checker

    async def _spare_runner(self, flavor: str) -> RunnerState:
        """A fresh runner for one code-bearing check; the next one is forked meanwhile."""
        self.flavors.add(flavor)
        spare, self._spare = self._spare, None
        if spare is None or not spare.alive:
            spare = await self._new_runner(Isolation.CHECK, sorted(self.flavors))
        self._spawn(self._fork_spare())
        return spare

    async def _fork_spare(self) -> None:
        async with self._checker_lock:
            if self._spare is None or not self._spare.alive:
                with contextlib.suppress(TurnoutError):
                    self._spare = await self._new_runner(Isolation.CHECK, sorted(self.flavors))

    def _model(self, header: dict[str, Any]) -> ModelState:
        key = str(header["key"])
        model = self.models.get(key)
        if model is None:
            model = self.models[key] = ModelState(key, dict(header["record"]))
        elif "record" in header:
            model.record = dict(header["record"])
        return model

    def _addresses(self, model: ModelState) -> list[dict[str, Any]]:
        return [
            {"id": r.id, "socket": str(r.socket)}
            for r in (self.runners.get(i) for i in sorted(model.runners))
            if r is not None and r.alive
        ]

    # -- placement -------------------------------------------------------------------------

    async def place(self, model: ModelState) -> None:
        """Load the model somewhere unless it is loaded already; concurrent askers share one
        load."""
        model.runners = {i for i in model.runners if i in self.runners}
        if model.runners:
            return
        model.misses += 1
        if model.loading is None or model.loading.done():
            model.loading = asyncio.ensure_future(self._load(model))
        await asyncio.shield(model.loading)

    async def scale(self, model: ModelState) -> None:
        """Add a replica of a hot model on another shared runner, if its limit allows."""
        if model.scaling or not model.runners:
            return
        limit = min(self.max_replicas.get(model.key, self.config.pool_size), self.config.pool_size)
        if len(model.runners) >= limit or self._isolation(model) is not Isolation.SHARED:
            return
        model.scaling = True
        try:
            await self._load(model)
        finally:
            model.scaling = False

    def _isolation(self, model: ModelState) -> Isolation:
        code = code_bearing(str(model.record["flavor"]), model.paths)
        return isolation_for(
            code=code, isolated=model.isolated, override=self.overrides.get(model.key)
        )

    def _need_bytes(self, model: ModelState) -> int:
        measured = model.memory_bytes
        if measured is None and model.record.get("memory_bytes") is not None:
            measured = int(model.record["memory_bytes"])
        return accounted_bytes(measured, model.files_bytes)

    async def _load(self, model: ModelState) -> None:
        """Load one copy of the model; its memory is reserved from the moment room is made
        for it, so loads under way together never overrun the budget."""
        if model.not_before > time.monotonic():
            raise RunnerRestarting(f"{model.key} is restarting ({model.last_error})")
        need = self._need_bytes(model)
        async with self._room:
            await self._make_room(need, keep=model.key)
            self._reserved += need
        try:
            await self._load_reserved(model, need)
        finally:
            self._reserved -= need

    async def _load_reserved(self, model: ModelState, need: int) -> None:
        started = time.monotonic()
        isolation = self._isolation(model)
        flavor = str(model.record["flavor"])
        if isolation is Isolation.SHARED:
            runner = await self._shared_runner(model, flavor)
        else:
            runner = await self._new_runner(Isolation.DEDICATED, [flavor])
        try:
            path = await asyncio.to_thread(self.staging.version, model.record)
        except TurnoutError:
            if isolation is Isolation.DEDICATED:
                self._retire(runner)
            raise
        request = {"op": "load", "key": model.key, "record": model.record, "path": str(path)}
        try:
            reply = await self._ask(runner, request, timeout_s=self.config.load_timeout_s)
        except (RunnerDied, TimeoutError) as exc:
            self._backoff(model, f"its runner died while loading it: {exc}")
            raise ModelUnavailable(f"{model.key} took its runner down while loading") from None
        finally:
            await asyncio.to_thread(self.staging.remove, path)
        if not reply.get("ok"):
            if isolation is Isolation.DEDICATED:
                self._retire(runner)
            self._backoff(model, str(reply.get("error")))
            raise ModelUnavailable(f"{model.key} failed to load: {reply.get('error')}")
        if not runner.alive:
            raise RunnerRestarting(f"the runner of {model.key} died just after loading it")
        # Registration measured the model on a second load in a warm process; a runner's
        # first load of a flavor also pays for importing its library, so it is the fallback.
        registered = model.record.get("memory_bytes")
        measured = registered if registered is not None else reply.get("memory_bytes")
        model.memory_bytes = (
            accounted_bytes(int(measured), model.files_bytes) if measured is not None else need
        )
        runner.models[model.key] = model.memory_bytes
        runner.stats[model.key] = (0, time.monotonic())
        self._prioritize(runner)
        model.runners.add(runner.id)
        model.loads += 1
        model.failures = 0
        model.cold_ms.append((time.monotonic() - started) * 1000)

    async def _shared_runner(self, model: ModelState, flavor: str) -> RunnerState:
        async with self._pool_lock:  # loads that start together start the pool once
            shared = [
                r for r in self.runners.values() if r.isolation is Isolation.SHARED and r.alive
            ]
            if len(shared) < self.config.pool_size:
                return await self._new_runner(Isolation.SHARED, sorted(self.flavors | {flavor}))
        free = {r.id: (r.memory_bytes, len(r.models)) for r in shared if model.key not in r.models}
        if not free:
            raise ModelUnavailable(f"{model.key} is already on every runner")
        return self.runners[least_loaded(free)]

    async def _make_room(self, need: int, *, keep: str) -> None:
        if need > self.config.budget_bytes:
            raise ModelUnavailable(
                f"{keep} needs about {need / 2**20:.0f} MB, more than the whole model "
                f"memory budget ({self.config.budget_bytes / 2**20:.0f} MB, "
                "TURNOUT_MODEL_MEMORY_MB)"
            )
        used = self.used_bytes() + self._reserved
        if used + need <= self.config.budget_bytes:
            return
        await self._refresh_stats()
        busy = {
            key
            for r in self.runners.values()
            if (b := r.slot.read()) is not None
            for key in [b.key]
        }
        residents = [
            Resident(
                key=key,
                runner=runner.id,
                memory_bytes=memory,
                last_used=runner.stats.get(key, (0, runner.started))[1],
                pinned=key in self.pinned or key == keep,
                routed=key in self.routed,
                busy=key in busy,
            )
            for runner in self.runners.values()
            if runner.alive and runner.isolation is not Isolation.CHECK
            for key, memory in runner.models.items()
        ]
        victims = choose_victims(
            residents, used_bytes=used, need_bytes=need, budget_bytes=self.config.budget_bytes
        )
        await asyncio.gather(*(self._evict(v.key, v.runner) for v in victims))

    async def _evict(self, key: str, runner_id: int) -> None:
        runner = self.runners.get(runner_id)
        model = self.models.get(key)
        if model is not None:
            model.runners.discard(runner_id)
            model.evictions += 1
        self.evictions += 1
        if runner is None:
            return
        runner.models.pop(key, None)
        runner.stats.pop(key, None)
        self._prioritize(runner)
        if runner.isolation is Isolation.DEDICATED:
            self._retire(runner)
            return
        with contextlib.suppress(RunnerDied, TimeoutError):
            await self._ask(
                runner, {"op": "unload", "keys": [key]}, timeout_s=5.0, kill_on_timeout=False
            )

    def _prioritize(self, runner: RunnerState) -> None:
        """A runner holding only shadow versions runs at a low CPU priority, so on a
        busy node its work waits for live answers rather than competing with them. Only
        where the priority can be raised again (a shadow promoted must not stay slow)."""
        low = bool(runner.models) and runner.models.keys() <= self.shadow_only and CAN_RAISE
        if low != runner.low_priority and runner.alive:
            runner.low_priority = low
            set_priority(runner.pid, LOW_PRIORITY if low else 0)

    def used_bytes(self) -> int:
        return sum(r.memory_bytes for r in self.runners.values() if r.alive)

    def _backoff(self, model: ModelState, reason: str) -> None:
        model.last_error = reason
        model.not_before = time.monotonic() + BACKOFF_S[min(model.failures, len(BACKOFF_S) - 1)]
        model.failures += 1

    # -- runners ---------------------------------------------------------------------------

    async def _new_runner(self, isolation: Isolation, flavors: list[str]) -> RunnerState:
        runner_id = next(self._ids)
        socket_path = self.config.run_dir / f"r{runner_id}.sock"
        slot_path = self.config.run_dir / f"r{runner_id}.slot"
        slot = Slot(slot_path, create=True)
        config = {
            "runner_id": runner_id,
            "slot": str(slot_path),
            "allow_pickle": self.config.allow_pickle,
            "memory_growth_mb": self.config.memory_growth_mb,
            "uid": self.config.runner_uid,
            "gid": self.config.runner_gid,
            "hide": [str(p) for p in self.config.hidden],
            "tmp": str(self.staging.folder(f"tmp-r{runner_id}")),
        }
        pid = await self.template.fork(
            {"socket": str(socket_path), "config": config, "flavors": flavors}
        )
        reader, writer = await asyncio.open_unix_connection(str(socket_path))
        runner = RunnerState(runner_id, pid, isolation, socket_path, slot, reader, writer)
        runner.reading = asyncio.get_running_loop().create_task(self._replies(runner))
        self.runners[runner_id] = runner
        log.info("runner %s (%s) started: pid %s", runner_id, isolation.value, pid)
        return runner

    async def _ask(
        self,
        runner: RunnerState,
        header: dict[str, Any],
        *,
        timeout_s: float,
        kill_on_timeout: bool = True,
    ) -> dict[str, Any]:
        """One control request. A timeout on a load or a check means the model is stuck:
        the runner is killed. One on a stats or unload request only means the runner is
        busy answering predictions: the reply is then dropped when it comes."""
        if not runner.alive:
            raise RunnerDied(f"runner {runner.id} is gone")
        request_id = next(runner.ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        runner.pending[request_id] = future
        try:
            runner.writer.write(wire.encode({**header, "id": request_id}, []))
            await runner.writer.drain()
            return await asyncio.wait_for(asyncio.shield(future), timeout_s)
        except TimeoutError:
            if kill_on_timeout:
                self._kill(runner)
                self._lost(runner, f"no answer to {header['op']} within {timeout_s:g} s")
            raise
        except ConnectionError as exc:
            self._lost(runner, "its process ended")
            raise RunnerDied(f"runner {runner.id} ended") from exc
        finally:
            runner.pending.pop(request_id, None)

    async def _replies(self, runner: RunnerState) -> None:
        """Hand each control reply to its request; a closed stream means the runner died."""
        try:
            while True:
                reply, _ = await wire.read_async(runner.reader)
                future = runner.pending.get(int(reply.get("id") or 0))
                if future is not None and not future.done():
                    future.set_result(reply)
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        for future in runner.pending.values():
            if not future.done():
                future.set_exception(RunnerDied(f"runner {runner.id} ended"))
        if runner.alive:
            self._lost(runner, "its process ended")

    async def _refresh_stats(self) -> None:
        async def one(runner: RunnerState) -> None:
            with contextlib.suppress(RunnerDied, TimeoutError):
                reply = await self._ask(
                    runner, {"op": "stats"}, timeout_s=STATS_TIMEOUT_S, kill_on_timeout=False
                )
                runner.stats = {k: (int(v[0]), float(v[1])) for k, v in reply["models"].items()}

        live = [r for r in self.runners.values() if r.alive and r.isolation is not Isolation.CHECK]
        await asyncio.gather(*(one(r) for r in live if not r.pending))

    def _kill(self, runner: RunnerState) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(runner.pid, signal.SIGKILL)

    def _retire(self, runner: RunnerState) -> None:
        """Stop a runner on purpose (its models are gone with it; not a failure)."""
        self._kill(runner)
        self._forget(runner)

    def _forget(self, runner: RunnerState) -> list[str]:
        runner.alive = False
        self.runners.pop(runner.id, None)
        runner.writer.close()
        for key in runner.models:
            model = self.models.get(key)
            if model is not None:
                model.runners.discard(runner.id)
        runner.slot.close()
        for path in (runner.socket, runner.socket.with_suffix(".slot")):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        return list(runner.models)

    def _lost(self, runner: RunnerState, reason: str) -> None:
        """A runner died or hung: isolate the model whose call it was running, then reload
        the others it held (recently used or pinned) on other runners."""
        if not runner.alive:
            return
        busy = runner.slot.read()
        culprit = busy.key.removeprefix("load:") if busy is not None else None
        keys = self._forget(runner)
        if runner.isolation is Isolation.CHECK:
            return
        self.restarts += 1
        log.warning("runner %s (pid %s) lost: %s", runner.id, runner.pid, reason)
        if culprit in self.models:
            model = self.models[culprit]
            model.isolated = True
            self._backoff(model, f"{reason} while running {culprit}")
        recent = time.monotonic() - IDLE_DEDICATED_S
        again = [
            self.models[k]
            for k in keys
            if k != culprit
            and k in self.models
            and (k in self.pinned or runner.stats.get(k, (0, 0.0))[1] > recent)
        ]
        for model in again:
            self._spawn(self._quietly(self.place(model)))

    async def _quietly(self, work: Any) -> None:
        """Background work (reloads after a loss, pinned loads): a failure is logged, and the
        next request for the model tries again."""
        try:
            await work
        except TurnoutError:
            pass
        except Exception as exc:  # e.g. the template going away while the node stops
            log.warning("background load failed: %s: %s", type(exc).__name__, exc)

    def _exited(self, pid: int, code: int) -> None:
        for runner in list(self.runners.values()):
            if runner.pid == pid:
                self._lost(runner, f"its process exited with code {code}")

    async def _watch(self, parent: int | None) -> None:
        """Kill calls past the hang limit; end with the process that started the host."""
        while True:
            await asyncio.sleep(WATCH_INTERVAL_S)
            if parent is not None and os.getppid() != parent:
                log.warning("the server that started this host is gone; stopping")
                await self.close()
                os._exit(0)
            now = time.monotonic()
            for runner in list(self.runners.values()):
                busy = runner.slot.read()
                if busy is None:
                    continue
                loading = busy.key.startswith("load:")
                limit = self.config.load_timeout_s if loading else self.config.hang_s
                if runner.low_priority:  # it waits for the CPU behind live work: not hung
                    limit *= LOW_PRIORITY_PATIENCE
                if now - busy.since > limit:
                    self._kill(runner)
                    self._lost(runner, f"hung for over {limit:g} s")

    async def _sweep(self) -> None:
        """Every few seconds: drop replicas of models gone quiet and dedicated runners of
        models no revision routes any more."""
        while True:
            await asyncio.sleep(SWEEP_INTERVAL_S)
            try:
                await self._refresh_stats()
                await self._trim()
            except Exception:  # keep sweeping whatever one pass met
                log.exception("host sweep failed")

    async def _trim(self) -> None:
        now = time.monotonic()
        for model in list(self.models.values()):
            holders = [self.runners[i] for i in model.runners if i in self.runners]
            calls = sum(r.stats.get(model.key, (0, 0.0))[0] for r in holders)
            rate = (calls - model.calls_seen) / SWEEP_INTERVAL_S
            model.calls_seen = calls
            if len(holders) > 1 and rate < SCALE_IN_CALLS_PER_S * (len(holders) - 1):
                quietest = min(holders, key=lambda r: r.stats.get(model.key, (0, 0.0))[0])
                await self._evict(model.key, quietest.id)
                model.evictions -= 1  # a replica removed is not an eviction
                self.evictions -= 1
        for runner in list(self.runners.values()):
            if runner.isolation is not Isolation.DEDICATED:
                continue
            last = max((s[1] for s in runner.stats.values()), default=runner.started)
            if all(k not in self.routed for k in runner.models) and now - last > IDLE_DEDICATED_S:
                self._retire(runner)

    # -- status ----------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        runners = [
            {
                "id": r.id,
                "pid": r.pid,
                "isolation": r.isolation.value,
                "models": len(r.models),
                "memory_bytes": r.memory_bytes,
            }
            for r in sorted(self.runners.values(), key=lambda r: r.id)
        ]
        models = []
        for model in sorted(self.models.values(), key=lambda m: m.key):
            holders = [self.runners[i] for i in sorted(model.runners) if i in self.runners]
            cold = sorted(model.cold_ms)
            models.append(
                {
                    "key": model.key,
                    "runners": [r.id for r in holders],
                    "loaded": bool(holders),
                    "memory_bytes": model.memory_bytes,
                    "hits": sum(r.stats.get(model.key, (0, 0.0))[0] for r in holders),
                    "misses": model.misses,
                    "loads": model.loads,
                    "evictions": model.evictions,
                    "cold_load_ms_p50": cold[len(cold) // 2] if cold else None,
                    "cold_load_ms_max": cold[-1] if cold else None,
                    "pinned": model.key in self.pinned,
                    "isolation": self._isolation(model).value,
                    "last_error": model.last_error,
                }
            )
        return {
            "budget_bytes": self.config.budget_bytes,
            "used_bytes": self.used_bytes(),
            "pool_size": self.config.pool_size,
            "restarts": self.restarts,
            "evictions": self.evictions,
            "loads": sum(m.loads for m in self.models.values()),
            "misses": sum(m.misses for m in self.models.values()),
            "runners": runners,
            "models": models,
        }


def _artifact_paths(source: Path) -> list[str]:
    """What a registration uploads: one file, or every file of a folder."""
    if source.is_dir():
        return [str(p.relative_to(source)) for p in source.rglob("*") if p.is_file()]
    return [source.name]


class CheckFailed(TurnoutError):
    """A registration check failed in its runner: the model's own fault, a 4xx."""

    def __init__(self, message: str, *, status: int = 422) -> None:
        super().__init__(message)
        self.status = status  # type: ignore[assignment]


def main() -> None:
    logging.basicConfig(level=os.environ.get("TURNOUT_LOG_LEVEL", "WARNING").upper())
    socket_path = Path(sys.argv[1])
    parent = int(sys.argv[2]) if len(sys.argv) > 2 else os.getppid()
    if os.getppid() != parent:  # the server that asked for this host is already gone
        return
    try:
        supervisor = Supervisor(host_config(socket_path.parent))
    except TurnoutError as exc:  # e.g. an artifact store that cannot be reached
        sys.exit(f"error: the model host cannot start: {exc.message}")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(supervisor.run(socket_path, parent=parent))


if __name__ == "__main__":
    main()
