"""The Python SDK: `turnout.Client(url, token)`, the same verbs as the CLI, over HTTP.

Every verb is built by `calls`, `management` or `registration` and only sent here, so the
asyncio client (`turnout.AsyncClient`) sends exactly the same requests."""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Unpack, cast, overload

import httpx

from turnout import calls, management, registration
from turnout.calls import (
    PAGE,
    ApiError,
    Call,
    InferResult,
    Inputs,
    OipRequest,
    ServerUnreachable,
    Steps,
)
from turnout.errors import TurnoutError
from turnout.management import (
    AuditQuery,
    BatchOptions,
    DeploymentOptions,
    Routing,
    TokenOptions,
)
from turnout.registration import Registration
from turnout.settings import Settings
from turnout.types import JSON

__all__ = ["PAGE", "ApiError", "Client", "InferResult", "ServerUnreachable", "discover_token"]

_UNSET: Any = calls.UNSET
"""A `fallback` not given (the CLI passes it through)."""


@dataclass(frozen=True)
class Connection:
    """Where a client sends requests and the headers it sends with each (its token)."""

    url: str
    token: str | None
    headers: dict[str, str]


def connection(url: str | None, token: str | None) -> Connection:
    """TURNOUT_URL and the token `discover_token` finds, unless given."""
    settings = Settings()
    base = (url or settings.server_url).rstrip("/")
    chosen = token or discover_token(settings, base)
    headers = {"authorization": f"Bearer {chosen}"} if chosen else {}
    return Connection(base, chosen, headers)


def discover_token(settings: Settings, url: str) -> str | None:
    """TURNOUT_TOKEN, else the admin token a local server wrote in TURNOUT_HOME, and that
    one only when `url` is that local server (a loopback address on its port): the admin
    token never travels to another host or to whatever else listens on this one."""
    if settings.token:
        return settings.token
    if not is_local_server(settings, url):
        return None
    try:
        return settings.admin_token_file.read_text().strip() or None
    except OSError:
        return None


def is_local_server(settings: Settings, url: str) -> bool:
    """Whether `url` names the server of this home: loopback host, and the configured port
    or the one `turnout serve` recorded there."""
    try:
        parsed = httpx.URL(url)
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
    except (httpx.InvalidURL, ValueError):
        return False
    return _loopback(parsed.host) and port in {settings.port, served_port(settings)}


def served_port_file(settings: Settings) -> Path:
    """Where `turnout serve` records the port it listens on, beside the admin token."""
    return settings.home / "server.port"


def served_port(settings: Settings) -> int | None:
    try:
        return int(served_port_file(settings).read_text())
    except (OSError, ValueError):
        return None


def _loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Client:
    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout_s: float = 120.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """`transport` replaces the network (e.g. `httpx.MockTransport` in tests)."""
        found = connection(url, token)
        self.url, self.token = found.url, found.token
        self._http = httpx.Client(
            base_url=self.url, headers=found.headers, timeout=timeout_s, transport=transport
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _send(self, call: Call) -> Any:
        try:
            response = self._http.request(call.method, call.path, **call.options())
        except httpx.TransportError as exc:
            raise calls.unreachable(self.url, exc) from exc
        return call.read(response)

    def _run(self, steps: Steps) -> list[JSON]:
        """Drive a verb of several requests, sending each answer back to it."""
        try:
            call = next(steps)
            while True:
                call = steps.send(self._send(call))
        except StopIteration as done:
            result: list[JSON] = done.value
            return result

    # -- server -----------------------------------------------------------------------------

    def health(self) -> JSON:
        return self._send(calls.health())

    def ready(self) -> bool:
        try:
            return bool(self._send(calls.ready()))
        except ServerUnreachable:
            return False

    def whoami(self) -> JSON:
        return self._send(calls.whoami())

    # -- predictions ------------------------------------------------------------------------

    def predict(self, deployment: str, instances: list[Any]) -> JSON:
        """Native JSON prediction: rows (lists) or records (dicts)."""
        return self._send(calls.predict(deployment, instances))

    @overload
    def infer(self, deployment: str, inputs: OipRequest, *, version: int | None = None) -> JSON: ...

    @overload
    def infer(
        self,
        deployment: str,
        inputs: Inputs,
        *,
        binary: bool = True,
        version: int | None = None,
        outputs: Sequence[str] | None = None,
        request_id: str | None = None,
    ) -> InferResult: ...

    def infer(
        self,
        deployment: str,
        inputs: Inputs | OipRequest,
        *,
        binary: bool = True,
        version: int | None = None,
        outputs: Sequence[str] | None = None,
        request_id: str | None = None,
    ) -> InferResult | JSON:
        """Open Inference Protocol v2: numpy arrays by input name (or one array, sent as
        `input-0`) in, arrays by output name out. With `binary` tensors travel as raw bytes
        (the binary tensor data extension) both ways; `outputs` names the outputs wanted
        (all when absent); `version` calls that version of the deployment directly.

        A whole OIP request (`{"inputs": [{"name": ..., "data": ...}]}`) is sent as it is
        and its JSON answer returned, as `infer_request` does."""
        if calls.is_oip_request(inputs):
            return self.infer_request(deployment, inputs, version=version)
        call = calls.infer(
            deployment,
            cast(Inputs, inputs),
            binary=binary,
            version=version,
            outputs=outputs,
            request_id=request_id,
        )
        result: InferResult = self._send(call)
        return result

    def infer_request(
        self, deployment: str, request: OipRequest, *, version: int | None = None
    ) -> JSON:
        """A raw Open Inference Protocol v2 request, as JSON; its JSON answer."""
        return self._send(calls.infer_request(deployment, request, version=version))

    # -- models -----------------------------------------------------------------------------

    def register(
        self, name: str, path: str | Path, *, flavor: str, **options: Unpack[Registration]
    ) -> JSON:
        """Register a version from a local file or folder, or from an MLflow registry or run
        (`models:/NAME@ALIAS`, `models:/NAME/VERSION`, `runs:/RUN_ID/PATH`, found through
        MLFLOW_TRACKING_URI; flavor `mlflow`), which keeps where it came from as tags."""
        return self._send(registration.register(name, path, flavor=flavor, options=options))

    def list_models(self) -> JSON:
        return self._send(management.list_models())

    def show_model(self, name: str) -> JSON:
        return self._send(management.show_model(name))

    def show_version(self, name: str, version: int) -> JSON:
        return self._send(management.show_version(name, version))

    def lineage(self, name: str, version: int) -> JSON:
        return self._send(management.lineage(name, version))

    def archive_version(self, name: str, version: int) -> JSON:
        """Keep the version readable, never newly deployed or routed."""
        return self._send(management.archive_version(name, version))

    def delete_version(self, name: str, version: int) -> None:
        self._send(management.delete_version(name, version))

    def delete_model(self, name: str) -> None:
        """The model and all its versions (refused while any deployment serves it)."""
        self._send(management.delete_model(name))

    # -- deployments ------------------------------------------------------------------------

    def create_deployment(self, name: str, **options: Unpack[DeploymentOptions]) -> JSON:
        return self._send(management.create_deployment(name, options))

    def delete_deployment(self, name: str) -> None:
        self._send(management.delete_deployment(name))

    def list_deployments(
        self, *, limit: int | None = None, offset: int = 0, prefix: str = ""
    ) -> JSON:
        """Deployments in name order: one page of `limit`, or all of them (page by page)."""
        return self._run(management.list_deployments(limit=limit, offset=offset, prefix=prefix))

    def show_deployment(self, name: str) -> JSON:
        return self._send(management.show_deployment(name))

    def history(self, name: str) -> JSON:
        return self._send(management.history(name))

    def route(self, name: str, **routing: Unpack[Routing]) -> JSON:
        return self._send(management.route(name, routing))

    def promote(self, name: str, *, version: int) -> JSON:
        return self._send(management.promote(name, version=version))

    def rollback(self, name: str, *, to_revision: int | None = None) -> JSON:
        return self._send(management.rollback(name, to_revision=to_revision))

    def apply(self, spec: dict[str, Any] | str) -> JSON:
        """Create or update a deployment from its spec (YAML text or a dict); only what
        differs is changed."""
        return self._send(management.apply(spec))

    # -- monitoring -------------------------------------------------------------------------

    def post_actuals(self, deployment: str, rows: list[dict[str, Any]]) -> JSON:
        """Ground truth for earlier predictions: `[{"prediction_id": ..., "actual": ...}]`.
        Returns what was stored and, per row, what was not and why."""
        return self._send(management.post_actuals(deployment, rows))

    def metrics(self, deployment: str, *, window: str = "24h") -> JSON:
        """Traffic, latency, accuracy and drift per version and role over `window`."""
        return self._send(management.metrics(deployment, window=window))

    def status(self, deployment: str, *, window: str = "24h") -> JSON:
        """What `turnout status` shows: the same as `metrics`."""
        return self.metrics(deployment, window=window)

    # -- rollouts ---------------------------------------------------------------------------

    def start_rollout(
        self, deployment: str, *, version: int, plan: dict[str, Any] | str | None = None
    ) -> JSON:
        """Move `version` into production through the plan's gates (YAML text or a dict)."""
        return self._send(management.start_rollout(deployment, version=version, plan=plan))

    def rollout_status(self, deployment: str) -> JSON:
        return self._send(management.rollout_status(deployment))

    def rollout_history(self, deployment: str) -> JSON:
        """Every step and verdict of every rollout of the deployment, oldest first."""
        return self._send(management.rollout_history(deployment))

    def approve_rollout(self, deployment: str) -> JSON:
        return self._send(management.approve_rollout(deployment))

    def abort_rollout(self, deployment: str, *, reason: str = "") -> JSON:
        return self._send(management.abort_rollout(deployment, reason=reason))

    # -- retraining -------------------------------------------------------------------------

    def set_retrain_policy(self, deployment: str, policy: str | dict[str, Any]) -> JSON:
        """Set the deployment's retrain policy, as YAML text or a mapping."""
        return self._send(management.set_retrain_policy(deployment, policy))

    def retrain_policy(self, deployment: str) -> JSON:
        return self._send(management.retrain_policy(deployment))

    def clear_retrain_policy(self, deployment: str) -> None:
        self._send(management.clear_retrain_policy(deployment))

    def retrain(
        self, deployment: str, *, data: dict[str, Any] | None = None, reason: str = ""
    ) -> JSON:
        """Queue a retrain of the champion; returns the job. `data` is a source as the server
        reads it (`{"path": ...}` on the server, `{"log": "30d"}`, ...); send your own files
        with `upload_data` first."""
        return self._send(management.retrain(deployment, data=data, reason=reason))

    def upload_data(self, location: str | Path) -> JSON:
        """Upload your CSV/Parquet file, folder or glob to the server (streamed; bounded by its
        upload limit); returns `{"path": ...}` to name as retrain data, `files` and `bytes`."""
        files = management.data_files(location)
        if not files:
            raise TurnoutError(f"no CSV or Parquet files at {location}")
        with contextlib.ExitStack() as stack:
            handles = [(f.name, stack.enter_context(f.open("rb"))) for f in files]
            return self._send(management.upload_data(handles))

    def jobs(
        self, *, deployment: str | None = None, state: str | None = None, limit: int = 100
    ) -> JSON:
        return self._send(management.jobs(deployment=deployment, state=state, limit=limit))

    def job(self, job_id: int) -> JSON:
        return self._send(management.job(job_id))

    def job_logs(self, job_id: int, *, tail_bytes: int = 64 * 1024) -> str:
        logs: str = self._send(management.job_logs(job_id, tail_bytes=tail_bytes))
        return logs

    def cancel_job(self, job_id: int) -> JSON:
        return self._send(management.cancel_job(job_id))

    # -- batch scoring ----------------------------------------------------------------------

    def batch(
        self, deployment: str, *, input: str | None = None, **options: Unpack[BatchOptions]
    ) -> JSON:
        """Queue a batch scoring job of `input`, a CSV/Parquet file, folder or glob on the
        server (send your own files with `upload_data` first); returns the job."""
        return self._send(management.batch(deployment, input=input, options=options))

    def download_batch_output(self, job_id: int, path: str | Path) -> Path:
        """Save a succeeded batch job's output as one Parquet file at `path` (streamed; the
        file appears only once whole)."""
        call = management.batch_output(job_id)
        target = Path(path).expanduser()
        partial = management.partial_path(target)
        try:
            with self._http.stream(call.method, call.path) as response:
                if response.status_code >= 400:
                    response.read()
                    calls.raise_for_error(response)
                with partial.open("wb") as out:
                    for data in response.iter_bytes():
                        out.write(data)
        except httpx.TransportError as exc:
            partial.unlink(missing_ok=True)
            raise calls.unreachable(self.url, exc) from exc
        partial.replace(target)
        return target

    # -- tokens and audit -------------------------------------------------------------------

    def create_token(self, name: str, role: str, **options: Unpack[TokenOptions]) -> JSON:
        """A new token (its secret is in `token`, shown once)."""
        return self._send(management.create_token(name, role, options))

    def list_tokens(self) -> JSON:
        return self._send(management.list_tokens())

    def revoke_token(self, token_id: int) -> None:
        self._send(management.revoke_token(token_id))

    def audit(self, *, limit: int = 100, **query: Unpack[AuditQuery]) -> list[dict[str, Any]]:
        """Audit entries, newest first, up to `limit` (read page by page)."""
        return self._run(management.audit(query, limit=limit))
