"""The asyncio SDK: `turnout.AsyncClient(url, token)`, the prediction verbs and the common
management verbs of `Client`, over `httpx.AsyncClient`.

It sends the very requests `Client` sends (built by `calls`, `management` and
`registration`); only the sending is its own. Many predictions can be in flight at once:
`await asyncio.gather(*(client.predict(...) for ...))`.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Unpack

import httpx

from turnout import calls, management, registration
from turnout.calls import Call, InferResult, Inputs, OipRequest, ServerUnreachable, Steps
from turnout.client import connection
from turnout.errors import TurnoutError
from turnout.management import BatchOptions, DeploymentOptions, Routing
from turnout.registration import Registration
from turnout.types import JSON


class AsyncClient:
    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout_s: float = 120.0,
        max_connections: int = 100,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """`transport` replaces the network (e.g. `httpx.MockTransport` in tests)."""
        found = connection(url, token)
        self.url, self.token = found.url, found.token
        limits = httpx.Limits(max_connections=max_connections)
        self._http = httpx.AsyncClient(
            base_url=self.url,
            headers=found.headers,
            timeout=timeout_s,
            limits=limits,
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def _send(self, call: Call) -> Any:
        try:
            response = await self._http.request(call.method, call.path, **call.options())
        except httpx.TransportError as exc:
            raise calls.unreachable(self.url, exc) from exc
        return call.read(response)

    async def _run(self, steps: Steps) -> list[JSON]:
        """Drive a verb of several requests, sending each answer back to it."""
        try:
            call = next(steps)
            while True:
                call = steps.send(await self._send(call))
        except StopIteration as done:
            result: list[JSON] = done.value
            return result

    # -- server -----------------------------------------------------------------------------

    async def health(self) -> JSON:
        return await self._send(calls.health())

    async def ready(self) -> bool:
        try:
            return bool(await self._send(calls.ready()))
        except ServerUnreachable:
            return False

    # -- predictions ------------------------------------------------------------------------

    async def predict(self, deployment: str, instances: list[Any]) -> JSON:
        """Native JSON prediction: rows (lists) or records (dicts)."""
        return await self._send(calls.predict(deployment, instances))

    async def infer(
        self,
        deployment: str,
        inputs: Inputs,
        *,
        binary: bool = True,
        version: int | None = None,
        outputs: Sequence[str] | None = None,
        request_id: str | None = None,
    ) -> InferResult:
        """Open Inference Protocol v2 with numpy arrays, as `Client.infer`."""
        call = calls.infer(
            deployment,
            inputs,
            binary=binary,
            version=version,
            outputs=outputs,
            request_id=request_id,
        )
        result: InferResult = await self._send(call)
        return result

    async def infer_request(
        self, deployment: str, request: OipRequest, *, version: int | None = None
    ) -> JSON:
        """A raw Open Inference Protocol v2 request, as JSON; its JSON answer."""
        return await self._send(calls.infer_request(deployment, request, version=version))

    # -- models -----------------------------------------------------------------------------

    async def register(
        self, name: str, path: str | Path, *, flavor: str, **options: Unpack[Registration]
    ) -> JSON:
        """As `Client.register`; reading, packing (and any MLflow download) run in a thread
        so the event loop keeps serving other calls."""
        call = await asyncio.to_thread(
            registration.register, name, path, flavor=flavor, options=options
        )
        return await self._send(call)

    async def list_models(self) -> JSON:
        return await self._send(management.list_models())

    async def show_model(self, name: str) -> JSON:
        return await self._send(management.show_model(name))

    async def show_version(self, name: str, version: int) -> JSON:
        return await self._send(management.show_version(name, version))

    async def delete_model(self, name: str) -> None:
        """The model and all its versions (refused while any deployment serves it)."""
        await self._send(management.delete_model(name))

    # -- deployments ------------------------------------------------------------------------

    async def create_deployment(self, name: str, **options: Unpack[DeploymentOptions]) -> JSON:
        return await self._send(management.create_deployment(name, options))

    async def delete_deployment(self, name: str) -> None:
        await self._send(management.delete_deployment(name))

    async def list_deployments(
        self, *, limit: int | None = None, offset: int = 0, prefix: str = ""
    ) -> JSON:
        """Deployments in name order: one page of `limit`, or all of them (page by page)."""
        steps = management.list_deployments(limit=limit, offset=offset, prefix=prefix)
        return await self._run(steps)

    async def show_deployment(self, name: str) -> JSON:
        return await self._send(management.show_deployment(name))

    async def history(self, name: str) -> JSON:
        return await self._send(management.history(name))

    async def route(self, name: str, **routing: Unpack[Routing]) -> JSON:
        return await self._send(management.route(name, routing))

    async def promote(self, name: str, *, version: int) -> JSON:
        return await self._send(management.promote(name, version=version))

    async def rollback(self, name: str, *, to_revision: int | None = None) -> JSON:
        return await self._send(management.rollback(name, to_revision=to_revision))

    async def apply(self, spec: dict[str, Any] | str) -> JSON:
        """Create or update a deployment from its spec (YAML text or a dict)."""
        return await self._send(management.apply(spec))

    # -- monitoring and rollouts ------------------------------------------------------------

    async def post_actuals(self, deployment: str, rows: list[dict[str, Any]]) -> JSON:
        """Ground truth for earlier predictions: `[{"prediction_id": ..., "actual": ...}]`."""
        return await self._send(management.post_actuals(deployment, rows))

    async def metrics(self, deployment: str, *, window: str = "24h") -> JSON:
        """Traffic, latency, accuracy and drift per version and role over `window`."""
        return await self._send(management.metrics(deployment, window=window))

    async def status(self, deployment: str, *, window: str = "24h") -> JSON:
        """What `turnout status` shows: the same as `metrics`."""
        return await self.metrics(deployment, window=window)

    async def start_rollout(
        self, deployment: str, *, version: int, plan: dict[str, Any] | str | None = None
    ) -> JSON:
        """Move `version` into production through the plan's gates (YAML text or a dict)."""
        call = management.start_rollout(deployment, version=version, plan=plan)
        return await self._send(call)

    async def rollout_status(self, deployment: str) -> JSON:
        return await self._send(management.rollout_status(deployment))

    async def approve_rollout(self, deployment: str) -> JSON:
        return await self._send(management.approve_rollout(deployment))

    async def abort_rollout(self, deployment: str, *, reason: str = "") -> JSON:
        return await self._send(management.abort_rollout(deployment, reason=reason))

    async def retrain(
        self, deployment: str, *, data: dict[str, Any] | None = None, reason: str = ""
    ) -> JSON:
        return await self._send(management.retrain(deployment, data=data, reason=reason))

    async def upload_data(self, location: str | Path) -> JSON:
        """As `Client.upload_data`; the files are read in a thread."""
        files = await asyncio.to_thread(management.data_files, location)
        if not files:
            raise TurnoutError(f"no CSV or Parquet files at {location}")
        contents = await asyncio.to_thread(lambda: [(f.name, f.read_bytes()) for f in files])
        handles = [(name, io.BytesIO(data)) for name, data in contents]
        return await self._send(management.upload_data(handles))

    # -- batch scoring ----------------------------------------------------------------------

    async def batch(
        self, deployment: str, *, input: str | None = None, **options: Unpack[BatchOptions]
    ) -> JSON:
        """As `Client.batch`."""
        return await self._send(management.batch(deployment, input=input, options=options))

    async def download_batch_output(self, job_id: int, path: str | Path) -> Path:
        """As `Client.download_batch_output`; the file is written in a thread."""
        call = management.batch_output(job_id)
        target = Path(path).expanduser()
        partial = management.partial_path(target)
        try:
            async with self._http.stream(call.method, call.path) as response:
                if response.status_code >= 400:
                    await response.aread()
                    calls.raise_for_error(response)
                out = await asyncio.to_thread(partial.open, "wb")
                try:
                    async for data in response.aiter_bytes():
                        await asyncio.to_thread(out.write, data)
                finally:
                    await asyncio.to_thread(out.close)
        except httpx.TransportError as exc:
            partial.unlink(missing_ok=True)
            raise calls.unreachable(self.url, exc) from exc
        await asyncio.to_thread(partial.replace, target)
        return target
