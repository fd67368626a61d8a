"""The protocol-free data plane: route a request, answer it through the chain, log it and
mirror it to shadows. Every protocol front (HTTP in `app.py`, gRPC) translates and calls here.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from turnout import tracing
from turnout.api.auth import Principal
from turnout.errors import BadRequest, Forbidden, ModelUnavailable, NotFound, TurnoutError
from turnout.gateway.access import Access, check_deployment, may_address_any_version
from turnout.gateway.chain import FAILOVER_SHARE, Answered, Chain, NoAnswer
from turnout.gateway.pool import ModelPool
from turnout.gateway.runner import Runner
from turnout.gateway.shadow import ShadowJob, ShadowMirror
from turnout.gateway.table import Route, RoutingTable
from turnout.monitoring.layout import new_prediction_id
from turnout.monitoring.predlog import LogEntry, PredictionLogger
from turnout.monitoring.stats import TrafficStats
from turnout.registry.flavors import Prediction
from turnout.registry.servable import Servable
from turnout.registry.signature import Signature, TensorSpec
from turnout.store.records import Role, RoutingConfig
from turnout.types import JSON, Array


@dataclass(frozen=True, slots=True)
class Answer:
    """A prediction plus who gave it, ready to encode in either protocol."""

    prediction: Prediction
    version: int
    role: Role
    revision: int
    request_id: str
    prediction_ids: list[str]


class DataPlane:
    """Answers predictions from the routing table, whatever protocol asked."""

    def __init__(
        self,
        table: RoutingTable,
        pool: ModelPool,
        runner: Runner,
        *,
        stats: TrafficStats,
        shadow: ShadowMirror,
        chain: Chain,
        max_body_bytes: int,
        versions_of: Callable[[str], list[int]],
        signature_of: Callable[[str, int], Awaitable[Signature]],
        logger: PredictionLogger | None = None,
        access: Access | None = None,
    ) -> None:
        self.table = table
        self.pool = pool
        self.runner = runner
        self.stats = stats
        self.shadow = shadow
        self.chain = chain
        self.max_body_bytes = max_body_bytes
        self.versions_of = versions_of
        self.signature_of = signature_of
        self.logger = logger
        self.access = access
        """Who may call; None: no tokens are checked (tests of the serving path alone)."""
        self._signatures: dict[tuple[str, int], Signature] = {}
        self.accepting = True

    async def authorize(self, authorization: str | None, deployment: str) -> Principal | None:
        """The caller behind an `Authorization` value, if it may call `deployment`; None
        for an allowed anonymous call. Every protocol front checks here."""
        if self.access is None:
            return None
        who = await self.access.principal(authorization)
        check_deployment(who, deployment)
        return who

    # -- routing ---------------------------------------------------------------------------

    async def route(self, name: str) -> Route:
        route = await self.table.lookup(name)
        if route is None:
            raise NotFound(f"deployment {name!r} not found")
        return route

    async def _direct(self, route: Route, version: int, who: Principal | None) -> Servable:
        """One version asked for by number, outside the traffic split (role `direct`)."""
        await self._addressable(route, version, who)
        return await self._load(route.model, version)

    async def _addressable(self, route: Route, version: int, who: Principal | None) -> None:
        """Versions of the active revision may be called by number; any other version only
        by deployers, so callers cannot make the gateway load what nothing routes to."""
        if version in route.config.versions():
            return
        if not may_address_any_version(who):
            raise Forbidden(
                f"version {version} is not in revision {route.revision} of deployment "
                f"{route.deployment!r}; only deployer tokens may call other versions"
            )
        if version not in await asyncio.to_thread(self.versions_of, route.model):  # the DB
            raise NotFound(f"version {version} of model {route.model!r} not found")

    async def _try_load(
        self, model: str, version: int, timeout_ms: int | None
    ) -> tuple[Servable | None, str]:
        """The loaded version, or why not; never waits on a loading version past the
        deployment's deadline (the chain then answers from the failover or fallback)."""
        loaded = self.pool.peek(model, version)
        if loaded is not None:
            return loaded, ""
        wait_s = timeout_ms * (1 - FAILOVER_SHARE) / 1000 if timeout_ms else None
        try:
            return await asyncio.wait_for(self._load(model, version), wait_s), ""
        except TimeoutError:
            return None, f"{model}:{version} is still loading"
        except ModelUnavailable as exc:
            return None, exc.message

    async def signature(self, model: str, version: int) -> Signature:
        """A version's signature, without waiting for the version itself to load."""
        loaded = self.pool.peek(model, version)
        if loaded is not None:
            return loaded.signature
        key = (model, version)
        signature = self._signatures.get(key)
        if signature is None:
            signature = self._signatures[key] = await self.signature_of(model, version)
        return signature

    async def _load(self, model: str, version: int) -> Servable:
        try:
            return await self.pool.get(model, version)
        except TurnoutError as exc:
            raise ModelUnavailable(
                f"version {model}:{version} cannot be loaded: {exc.message}"
            ) from exc

    async def answer(
        self,
        route: Route,
        version: int | None,
        decode: Callable[[Signature], Array],
        *,
        request_id: str | None,
        key: str | None,
        who: Principal | None = None,
    ) -> Answer:
        """The answer to one request: routed (`version` None) or from one version, logged,
        mirrored to shadows; traced as one span when tracing is on."""
        tracer = tracing.TRACER
        if tracer is None:
            return await self._answer(route, version, decode, request_id, key, who)
        with tracing.request_span(tracer, route.deployment, tracing.INCOMING.get()) as span:
            answer = await self._answer(route, version, decode, request_id, key, who)
            span.set_attributes({
                "turnout.revision": answer.revision, "turnout.version": answer.version,
                "turnout.role": answer.role.value, "turnout.rows": len(answer.prediction_ids),
                "turnout.prediction_id": answer.request_id,
            })  # fmt: skip
            return answer

    async def _answer(
        self,
        route: Route,
        version: int | None,
        decode: Callable[[Signature], Array],
        request_id: str | None,
        key: str | None,
        who: Principal | None,
    ) -> Answer:
        if request_id is not None and not _printable_id(request_id):
            raise BadRequest("'id' must be 1-128 printable ASCII characters")
        started = time.perf_counter()
        base = request_id or new_prediction_id()
        payloads = self._payloads(route)  # drawn once: the answer and its shadows agree
        if version is not None:
            servable, role = await self._direct(route, version, who), Role.DIRECT
            rows = decode(servable.signature)
            ids = _ids(base, len(rows))
            answered = await self._logged(
                route, rows, ids, started,
                self.chain.answer(
                    deployment=route.deployment, config=_direct_config(version),
                    model=route.model, version=version, servable=servable, role=role,
                    rows=rows, started=started,
                ),
                payloads, servable.signature.tensors,
            )  # fmt: skip
        else:
            plan = route.router.plan(key)
            signature = await self.signature(route.model, plan.version)
            rows = decode(signature)
            ids = _ids(base, len(rows))
            chosen, failure = await self._try_load(
                route.model, plan.version, route.config.timeout_ms
            )
            answered = await self._logged(
                route, rows, ids, started,
                self.chain.answer(
                    deployment=route.deployment, config=route.config, model=route.model,
                    version=plan.version, servable=chosen, role=plan.role, rows=rows,
                    started=started, failure=failure,
                ),
                payloads, signature.tensors,
            )  # fmt: skip
            if chosen is not None:
                for shadow in plan.shadows:
                    self.shadow.submit(
                        ShadowJob(route.deployment, route.model, shadow, rows,
                                  signature, decode, answered.prediction,
                                  route.revision, ids, payloads,
                                  tracing.current_context() if tracing.TRACER else None)
                    )  # fmt: skip
        return Answer(
            answered.prediction, answered.version, answered.role, route.revision, base, ids
        )

    @staticmethod
    def _payloads(route: Route) -> bool:
        """Whether this request's inputs and outputs go into the prediction log."""
        share = route.config.log_payloads
        return share >= 1.0 or (share > 0.0 and random.random() < share)

    async def _logged(
        self,
        route: Route,
        rows: Array,
        ids: list[str],
        started: float,
        answering: Awaitable[Answered],
        payloads: bool,
        tensors: tuple[TensorSpec, ...] = (),
    ) -> Answered:
        """Await the chain's answer and log it, with every step that failed before it;
        `payloads`: whether inputs and outputs are logged; `tensors`: the inputs packed in a
        tensor model's rows, for the log to unpack."""
        logger = self.logger
        try:
            answered = await answering
        except NoAnswer as exc:
            if logger is not None:
                self._log_failed(logger, route, rows, ids, exc.failed, payloads, tensors)
            raise
        if logger is not None:
            if answered.failed:
                self._log_failed(logger, route, rows, ids, answered.failed, payloads, tensors)
            logger.record(
                LogEntry(
                    route.deployment, route.revision, route.model, answered.version,
                    answered.role.value, ids, time.time(), (time.perf_counter() - started) * 1000,
                    "fallback" if answered.role is Role.FALLBACK else "ok",
                    rows if payloads else None, answered.prediction if payloads else None,
                    None, tensors,
                )
            )  # fmt: skip
            if tracing.TRACER is not None:
                tracing.event("logged", {"turnout.payloads": payloads})
        return answered

    @staticmethod
    def _log_failed(
        logger: PredictionLogger,
        route: Route,
        rows: Array,
        ids: list[str],
        failed: tuple[Any, ...],
        payloads: bool,
        tensors: tuple[TensorSpec, ...],
    ) -> None:
        now = time.time()
        for attempt in failed:
            logger.record(
                LogEntry(
                    route.deployment, route.revision, route.model, attempt.version,
                    attempt.role.value, ids, now, attempt.latency_ms, attempt.outcome,
                    rows if payloads else None, None, attempt.error, tensors,
                )
            )  # fmt: skip

    async def metadata(
        self, name: str, version: int | None, who: Principal | None
    ) -> dict[str, JSON]:
        route = await self.route(name)
        if version is None:
            servable = await self._load(route.model, route.config.champion)
        else:
            servable = await self._direct(route, version, who)
        signature = servable.signature
        predict_shape = list(signature.output_shape or (-1,))
        outputs: list[dict[str, JSON]] = [
            {"name": "predict", "datatype": signature.output_dtype.value, "shape": predict_shape}
        ]
        if signature.classes is not None:
            outputs.append(
                {"name": "predict_proba", "datatype": "FP64", "shape": [-1, len(signature.classes)]}
            )
        served = sorted(route.config.versions()) if version is None else [version]
        return {
            "name": name,
            "versions": [str(v) for v in served],
            "platform": servable.record.flavor,
            "inputs": [t.to_dict() for t in signature.tensors]
            or [
                {
                    "name": "input-0",
                    "datatype": signature.input_dtype.value,
                    "shape": [-1, signature.n_features],
                }
            ],
            "outputs": outputs,
            "parameters": {
                "model": route.model,
                "champion": str(route.config.champion),
                "revision": route.revision,
                "columns": [
                    {"name": c.name, "datatype": c.dtype.value, "shape": [-1]}
                    for c in signature.columns
                ]
                if signature.named
                else [],
                "classes": list(signature.classes) if signature.classes is not None else None,
            },
        }


def _direct_config(version: int) -> RoutingConfig:
    """A version asked for by number answers alone: no deadline chain, no fallback."""
    return RoutingConfig(champion=version)


def _printable_id(text: str) -> bool:
    return 0 < len(text) <= 128 and text.isascii() and text.isprintable()


def _ids(base: str, n: int) -> list[str]:
    """One prediction id per row: the request's id for one row, `<id>-<i>` for several."""
    return [base] if n == 1 else [f"{base}-{i}" for i in range(n)]
