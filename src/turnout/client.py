"""The Python SDK: `turnout.Client(url, token)`, the same verbs as the CLI, over HTTP."""

from __future__ import annotations

import io
import ipaddress
import tarfile
from http import HTTPStatus
from pathlib import Path
from typing import Any

import httpx
import orjson

from turnout import mlflow_import
from turnout.errors import TurnoutError
from turnout.settings import Settings
from turnout.types import JSON

_UNSET: Any = object()


PAGE = 1000
"""Deployments asked for per request when listing them all."""


class ApiError(TurnoutError):
    """The server answered with an error; `status` is its HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = HTTPStatus(status)


class ServerUnreachable(TurnoutError):
    status = HTTPStatus.SERVICE_UNAVAILABLE


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


def pack(path: Path) -> bytes:
    """A file or folder as a gzipped tar, paths relative to it."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1) as tar:
        if path.is_file():
            tar.add(path, arcname=path.name)
        else:
            for item in sorted(path.rglob("*")):
                if item.is_file() and "__pycache__" not in item.parts:
                    tar.add(item, arcname=item.relative_to(path).as_posix())
    return buffer.getvalue()


class Client:
    def __init__(
        self, url: str | None = None, token: str | None = None, *, timeout_s: float = 120.0
    ) -> None:
        settings = Settings()
        self.url = (url or settings.server_url).rstrip("/")
        self.token = token or discover_token(settings, self.url)
        headers = {"authorization": f"Bearer {self.token}"} if self.token else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout_s)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _text(self, method: str, path: str, **kwargs: Any) -> str:
        """Like `_call`, for an endpoint that answers plain text."""
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ServerUnreachable(f"cannot reach turnout at {self.url} ({exc})") from exc
        if response.status_code >= 400:
            try:
                message = response.json().get("error", response.text)
            except ValueError:
                message = response.text or response.reason_phrase
            raise ApiError(response.status_code, str(message))
        return response.text

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ServerUnreachable(
                f"cannot reach turnout at {self.url} ({exc}); is 'turnout serve' running? "
                "Set TURNOUT_URL to point elsewhere."
            ) from exc
        if response.status_code >= 400:
            try:
                message = response.json().get("error", response.text)
            except ValueError:
                message = response.text or response.reason_phrase
            raise ApiError(response.status_code, str(message))
        if response.status_code == HTTPStatus.NO_CONTENT or not response.content:
            return None
        return response.json()

    # -- server -----------------------------------------------------------------------------

    def health(self) -> JSON:
        return self._call("GET", "/api/v1/health")

    def ready(self) -> bool:
        try:
            return bool(self._http.get("/v2/health/ready").status_code == HTTPStatus.OK)
        except httpx.TransportError:
            return False

    def whoami(self) -> JSON:
        return self._call("GET", "/api/v1/whoami")

    # -- models -----------------------------------------------------------------------------

    def register(
        self,
        name: str,
        path: str | Path,
        *,
        flavor: str,
        metrics: dict[str, float] | None = None,
        params: dict[str, str] | None = None,
        tags: dict[str, str] | None = None,
        description: str = "",
        training_data: str | Path | None = None,
        target: str | None = None,
        parent_version: int | None = None,
        pipeline: str | None = None,
    ) -> JSON:
        """Register a version from a local file or folder, or from an MLflow registry or run
        (`models:/NAME@ALIAS`, `models:/NAME/VERSION`, `runs:/RUN_ID/PATH`, found through
        MLFLOW_TRACKING_URI; flavor `mlflow`), keeping where it came from as tags.

        `pipeline` names the training code for retraining: an import path (`pkg.mod:fit`,
        importable on the server) or a local Python file (`train.py` or
        `train.py:function`), which is uploaded with the version."""
        if mlflow_import.is_mlflow_uri(str(path)):
            with mlflow_import.downloaded(str(path), flavor=flavor) as imported:
                return self.register(
                    name,
                    imported.folder,
                    flavor=flavor,
                    metrics=metrics,
                    params=params,
                    tags={**imported.tags, **(tags or {})},
                    description=description,
                    training_data=training_data,
                    target=target,
                    parent_version=parent_version,
                    pipeline=pipeline,
                )
        source = Path(path)
        if not source.exists():
            raise TurnoutError(f"{source} does not exist")
        meta = {
            "kind": "file" if source.is_file() else "dir",
            "metrics": metrics or {},
            "params": params or {},
            "tags": tags or {},
            "description": description,
            "target": target,
            "parent_version": parent_version,
        }
        files: dict[str, Any] = {"artifact": ("artifact.tar.gz", pack(source), "application/gzip")}
        if training_data is not None:
            data = Path(training_data)
            if not data.is_file():
                raise TurnoutError(f"training data {data} is not a file")
            files["training_data"] = (data.name, data.read_bytes(), "application/octet-stream")
        if pipeline is not None:
            file_part, _, function = pipeline.partition(".py:")
            if pipeline.endswith(".py") or function:
                code = Path(pipeline if not function else file_part + ".py").expanduser()
                if not code.is_file():
                    raise TurnoutError(f"pipeline file {code} does not exist")
                meta["pipeline"] = {
                    "kind": "file",
                    "name": code.name,
                    "function": function or "fit",
                }
                files["pipeline_file"] = (code.name, code.read_bytes(), "text/x-python")
            else:
                meta["pipeline"] = {"kind": "import", "ref": pipeline}
        form = {"flavor": flavor, "metadata": orjson.dumps(meta).decode()}
        return self._call("POST", f"/api/v1/models/{name}/versions", data=form, files=files)

    def list_models(self) -> JSON:
        return self._call("GET", "/api/v1/models")

    def show_model(self, name: str) -> JSON:
        return self._call("GET", f"/api/v1/models/{name}")

    def show_version(self, name: str, version: int) -> JSON:
        return self._call("GET", f"/api/v1/models/{name}/versions/{version}")

    def lineage(self, name: str, version: int) -> JSON:
        return self._call("GET", f"/api/v1/models/{name}/versions/{version}/lineage")

    # -- deployments ------------------------------------------------------------------------

    def archive_version(self, name: str, version: int) -> JSON:
        """Keep the version readable, never newly deployed or routed."""
        return self._call("POST", f"/api/v1/models/{name}/versions/{version}/archive")

    def delete_version(self, name: str, version: int) -> None:
        self._call("DELETE", f"/api/v1/models/{name}/versions/{version}")

    def delete_model(self, name: str) -> None:
        """The model and all its versions (refused while any deployment serves it)."""
        self._call("DELETE", f"/api/v1/models/{name}")

    def delete_deployment(self, name: str) -> None:
        self._call("DELETE", f"/api/v1/deployments/{name}")

    def create_deployment(
        self,
        name: str,
        *,
        model: str,
        version: int | None = None,
        timeout_ms: int | None = None,
        failover: int | None = None,
        fallback: JSON = _UNSET,
        log_payloads: float | None = None,
        keep_loaded: bool = False,
        isolation: str | None = None,
        max_replicas: int | None = None,
    ) -> JSON:
        body: dict[str, JSON] = {"name": name, "model": model, "version": version}
        if keep_loaded:
            body["keep_loaded"] = True
        if isolation is not None:
            body["isolation"] = isolation
        if max_replicas is not None:
            body["max_replicas"] = max_replicas
        if log_payloads is not None:
            body["log_payloads"] = log_payloads
        if timeout_ms is not None:
            body["timeout_ms"] = timeout_ms
        if failover is not None:
            body["failover"] = failover
        if fallback is not _UNSET:
            body["fallback"] = fallback
        return self._call("POST", "/api/v1/deployments", json=body)

    def list_deployments(
        self, *, limit: int | None = None, offset: int = 0, prefix: str = ""
    ) -> JSON:
        """Deployments in name order: one page of `limit`, or all of them (page by page)."""
        params: dict[str, Any] = {"offset": offset, "prefix": prefix}
        if limit is not None:
            return self._call("GET", "/api/v1/deployments", params={**params, "limit": limit})
        found: list[JSON] = []
        while True:
            page = self._call(
                "GET",
                "/api/v1/deployments",
                params={**params, "offset": offset + len(found), "limit": PAGE},
            )
            found.extend(page)
            if len(page) < PAGE:
                return found

    def show_deployment(self, name: str) -> JSON:
        return self._call("GET", f"/api/v1/deployments/{name}")

    def history(self, name: str) -> JSON:
        return self._call("GET", f"/api/v1/deployments/{name}/history")

    def route(
        self,
        name: str,
        *,
        challengers: dict[int, float] | None = None,
        shadows: dict[int, float] | None = None,
        sticky_key: str | None = None,
        clear: bool = False,
        log_payloads: float | None = None,
    ) -> JSON:
        body: dict[str, JSON] = {
            "challengers": {str(k): v for k, v in (challengers or {}).items()},
            "shadows": {str(k): v for k, v in (shadows or {}).items()},
            "sticky_key": sticky_key,
            "clear": clear,
        }
        if log_payloads is not None:
            body["log_payloads"] = log_payloads
        return self._call("POST", f"/api/v1/deployments/{name}/route", json=body)

    def promote(self, name: str, *, version: int) -> JSON:
        return self._call("POST", f"/api/v1/deployments/{name}/promote", json={"version": version})

    def rollback(self, name: str, *, to_revision: int | None = None) -> JSON:
        body = {"to_revision": to_revision}
        return self._call("POST", f"/api/v1/deployments/{name}/rollback", json=body)

    # -- predictions ------------------------------------------------------------------------

    # -- rollouts ---------------------------------------------------------------------------

    def start_rollout(
        self, deployment: str, *, version: int, plan: dict[str, Any] | str | None = None
    ) -> JSON:
        """Move `version` into production through the plan's gates (YAML text or a dict)."""
        body: dict[str, Any] = {"version": version, "plan": plan}
        return self._call("POST", f"/api/v1/deployments/{deployment}/rollout", json=body)

    def rollout_status(self, deployment: str) -> JSON:
        return self._call("GET", f"/api/v1/deployments/{deployment}/rollout")

    def rollout_history(self, deployment: str) -> JSON:
        """Every step and verdict of every rollout of the deployment, oldest first."""
        return self._call("GET", f"/api/v1/deployments/{deployment}/rollout/history")

    # -- retraining -------------------------------------------------------------------------

    def set_retrain_policy(self, deployment: str, policy: str | dict[str, Any]) -> JSON:
        """Set the deployment's retrain policy, as YAML text or a mapping."""
        return self._call(
            "PUT", f"/api/v1/deployments/{deployment}/retrain-policy", json={"policy": policy}
        )

    def retrain_policy(self, deployment: str) -> JSON:
        return self._call("GET", f"/api/v1/deployments/{deployment}/retrain-policy")

    def clear_retrain_policy(self, deployment: str) -> None:
        self._call("DELETE", f"/api/v1/deployments/{deployment}/retrain-policy")

    def retrain(
        self, deployment: str, *, data: dict[str, Any] | None = None, reason: str = ""
    ) -> JSON:
        """Queue a retrain of the champion; returns the job."""
        body = {"data": data, "reason": reason}
        return self._call("POST", f"/api/v1/deployments/{deployment}/retrain", json=body)

    def jobs(
        self, *, deployment: str | None = None, state: str | None = None, limit: int = 100
    ) -> JSON:
        params: dict[str, Any] = {"limit": limit}
        if deployment is not None:
            params["deployment"] = deployment
        if state is not None:
            params["state"] = state
        return self._call("GET", "/api/v1/jobs", params=params)

    def job(self, job_id: int) -> JSON:
        return self._call("GET", f"/api/v1/jobs/{job_id}")

    def job_logs(self, job_id: int, *, tail_bytes: int = 64 * 1024) -> str:
        return self._text("GET", f"/api/v1/jobs/{job_id}/logs", params={"tail_bytes": tail_bytes})

    def cancel_job(self, job_id: int) -> JSON:
        return self._call("POST", f"/api/v1/jobs/{job_id}/cancel")

    def approve_rollout(self, deployment: str) -> JSON:
        return self._call("POST", f"/api/v1/deployments/{deployment}/rollout/approve")

    def abort_rollout(self, deployment: str, *, reason: str = "") -> JSON:
        body = {"reason": reason}
        return self._call("POST", f"/api/v1/deployments/{deployment}/rollout/abort", json=body)

    def apply(self, spec: dict[str, Any] | str) -> JSON:
        """Create or update a deployment from its spec (YAML text or a dict); only what
        differs is changed."""
        if isinstance(spec, str):
            headers = {"content-type": "application/yaml"}
            return self._call("POST", "/api/v1/apply", content=spec.encode(), headers=headers)
        return self._call("POST", "/api/v1/apply", json=spec)

    # -- monitoring -------------------------------------------------------------------------

    def post_actuals(self, deployment: str, rows: list[dict[str, Any]]) -> JSON:
        """Ground truth for earlier predictions: `[{"prediction_id": ..., "actual": ...}]`.
        Returns what was stored and, per row, what was not and why."""
        return self._call("POST", f"/api/v1/deployments/{deployment}/actuals", json=rows)

    def metrics(self, deployment: str, *, window: str = "24h") -> JSON:
        """Traffic, latency, accuracy and drift per version and role over `window`."""
        return self._call(
            "GET", f"/api/v1/deployments/{deployment}/metrics", params={"window": window}
        )

    def predict(self, deployment: str, instances: list[Any]) -> JSON:
        """Native JSON prediction: rows (lists) or records (dicts)."""
        return self._call(
            "POST", f"/v1/deployments/{deployment}/predict", json={"instances": instances}
        )

    def infer(
        self, deployment: str, request: dict[str, Any], *, version: int | None = None
    ) -> JSON:
        """A raw Open Inference Protocol v2 request."""
        path = f"/v2/models/{deployment}"
        if version is not None:
            path += f"/versions/{version}"
        return self._call("POST", path + "/infer", json=request)

    # -- tokens -----------------------------------------------------------------------------

    def create_token(
        self,
        name: str,
        role: str,
        *,
        permissions: list[str] | None = None,
        deployments: list[str] | None = None,
        expires_in: str | None = None,
    ) -> JSON:
        """A new token (its secret is in `token`, shown once); `deployments` limits the
        deployments it may call, `expires_in` (`30d`, `12h`) its life."""
        body: dict[str, Any] = {"name": name, "role": role}
        if permissions:
            body["permissions"] = permissions
        if deployments is not None:
            body["deployments"] = deployments
        if expires_in is not None:
            body["expires_in"] = expires_in
        return self._call("POST", "/api/v1/tokens", json=body)

    def list_tokens(self) -> JSON:
        return self._call("GET", "/api/v1/tokens")

    def revoke_token(self, token_id: int) -> None:
        self._call("DELETE", f"/api/v1/tokens/{token_id}")

    def audit(
        self,
        *,
        since: str | None = None,
        actor: str | None = None,
        action: str | None = None,
        target: str | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Audit entries, newest first, up to `limit` (read page by page)."""
        params: dict[str, Any] = {"since": since, "actor": actor, "action": action}
        params = {k: v for k, v in {**params, "target": target}.items() if v is not None}
        entries: list[dict[str, Any]] = []
        before: int | None = None
        while len(entries) < limit:
            page_size = min(limit - len(entries), 1000)
            query = {**params, "limit": page_size}
            if before is not None:
                query["before_id"] = before
            page = self._call("GET", "/api/v1/audit", params=query)
            entries.extend(page["entries"])
            before = page["next_before_id"]
            if before is None:
                break
        return entries
