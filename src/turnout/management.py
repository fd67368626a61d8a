"""Requests of the management API (`/api/v1`) as `Call` values, shared by `Client` and
`AsyncClient`: models, deployments and routing, monitoring, rollouts, retraining, tokens
and the audit log."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO, Required, TypedDict

from turnout.calls import PAGE, UNSET, Call, Steps, text_answer
from turnout.types import JSON

# -- models --------------------------------------------------------------------------------


def list_models() -> Call:
    return Call("GET", "/api/v1/models")


def show_model(name: str) -> Call:
    return Call("GET", f"/api/v1/models/{name}")


def show_version(name: str, version: int) -> Call:
    return Call("GET", f"/api/v1/models/{name}/versions/{version}")


def lineage(name: str, version: int) -> Call:
    return Call("GET", f"/api/v1/models/{name}/versions/{version}/lineage")


def archive_version(name: str, version: int) -> Call:
    return Call("POST", f"/api/v1/models/{name}/versions/{version}/archive")


def delete_version(name: str, version: int) -> Call:
    return Call("DELETE", f"/api/v1/models/{name}/versions/{version}")


def delete_model(name: str) -> Call:
    return Call("DELETE", f"/api/v1/models/{name}")


# -- deployments ---------------------------------------------------------------------------


class DeploymentOptions(TypedDict, total=False):
    """How a new deployment serves: `model` and `version` (the latest when absent) answer;
    `timeout_ms` is its deadline, `failover` a version that answers when the champion
    cannot, `fallback` the value returned when nothing can."""

    model: Required[str]
    version: int | None
    timeout_ms: int | None
    failover: int | None
    fallback: JSON
    log_payloads: float | None
    keep_loaded: bool
    isolation: str | None
    max_replicas: int | None


def create_deployment(name: str, options: DeploymentOptions) -> Call:
    body: dict[str, JSON] = {"name": name, "model": options["model"]}
    body["version"] = options.get("version")
    if options.get("keep_loaded"):
        body["keep_loaded"] = True
    for key in ("isolation", "max_replicas", "log_payloads", "timeout_ms", "failover"):
        if options.get(key) is not None:
            body[key] = options.get(key)
    if options.get("fallback", UNSET) is not UNSET:
        body["fallback"] = options["fallback"]
    return Call("POST", "/api/v1/deployments", json=body)


def list_deployments(*, limit: int | None, offset: int, prefix: str) -> Steps:
    """One page of `limit`, or all deployments page by page."""
    params: dict[str, Any] = {"offset": offset, "prefix": prefix}
    if limit is not None:
        page = yield Call("GET", "/api/v1/deployments", params={**params, "limit": limit})
        return list(page)
    found: list[JSON] = []
    while True:
        query = {**params, "offset": offset + len(found), "limit": PAGE}
        page = yield Call("GET", "/api/v1/deployments", params=query)
        found.extend(page)
        if len(page) < PAGE:
            return found


def show_deployment(name: str) -> Call:
    return Call("GET", f"/api/v1/deployments/{name}")


def delete_deployment(name: str) -> Call:
    return Call("DELETE", f"/api/v1/deployments/{name}")


def history(name: str) -> Call:
    return Call("GET", f"/api/v1/deployments/{name}/history")


class Routing(TypedDict, total=False):
    """Who answers besides the champion: challengers (version -> share of live traffic)
    and shadows (version -> share of requests copied); `clear` drops the current ones."""

    challengers: dict[int, float] | None
    shadows: dict[int, float] | None
    sticky_key: str | None
    clear: bool
    log_payloads: float | None


def route(name: str, routing: Routing) -> Call:
    body: dict[str, JSON] = {
        "challengers": {str(k): v for k, v in (routing.get("challengers") or {}).items()},
        "shadows": {str(k): v for k, v in (routing.get("shadows") or {}).items()},
        "sticky_key": routing.get("sticky_key"),
        "clear": routing.get("clear", False),
    }
    if routing.get("log_payloads") is not None:
        body["log_payloads"] = routing.get("log_payloads")
    return Call("POST", f"/api/v1/deployments/{name}/route", json=body)


def promote(name: str, *, version: int) -> Call:
    return Call("POST", f"/api/v1/deployments/{name}/promote", json={"version": version})


def rollback(name: str, *, to_revision: int | None) -> Call:
    body = {"to_revision": to_revision}
    return Call("POST", f"/api/v1/deployments/{name}/rollback", json=body)


def apply(spec: dict[str, Any] | str) -> Call:
    if isinstance(spec, str):
        headers = {"content-type": "application/yaml"}
        return Call("POST", "/api/v1/apply", content=spec.encode(), headers=headers)
    return Call("POST", "/api/v1/apply", json=spec)


# -- monitoring ----------------------------------------------------------------------------


def post_actuals(deployment: str, rows: list[dict[str, Any]]) -> Call:
    return Call("POST", f"/api/v1/deployments/{deployment}/actuals", json=rows)


def metrics(deployment: str, *, window: str) -> Call:
    path = f"/api/v1/deployments/{deployment}/metrics"
    return Call("GET", path, params={"window": window})


# -- rollouts ------------------------------------------------------------------------------


def start_rollout(deployment: str, *, version: int, plan: dict[str, Any] | str | None) -> Call:
    body: dict[str, Any] = {"version": version, "plan": plan}
    return Call("POST", f"/api/v1/deployments/{deployment}/rollout", json=body)


def rollout_status(deployment: str) -> Call:
    return Call("GET", f"/api/v1/deployments/{deployment}/rollout")


def rollout_history(deployment: str) -> Call:
    return Call("GET", f"/api/v1/deployments/{deployment}/rollout/history")


def approve_rollout(deployment: str) -> Call:
    return Call("POST", f"/api/v1/deployments/{deployment}/rollout/approve")


def abort_rollout(deployment: str, *, reason: str) -> Call:
    body = {"reason": reason}
    return Call("POST", f"/api/v1/deployments/{deployment}/rollout/abort", json=body)


# -- retraining ----------------------------------------------------------------------------


def set_retrain_policy(deployment: str, policy: str | dict[str, Any]) -> Call:
    path = f"/api/v1/deployments/{deployment}/retrain-policy"
    return Call("PUT", path, json={"policy": policy})


def retrain_policy(deployment: str) -> Call:
    return Call("GET", f"/api/v1/deployments/{deployment}/retrain-policy")


def clear_retrain_policy(deployment: str) -> Call:
    return Call("DELETE", f"/api/v1/deployments/{deployment}/retrain-policy")


def retrain(deployment: str, *, data: dict[str, Any] | None, reason: str) -> Call:
    body = {"data": data, "reason": reason}
    return Call("POST", f"/api/v1/deployments/{deployment}/retrain", json=body)


def jobs(*, deployment: str | None, state: str | None, limit: int) -> Call:
    params: dict[str, Any] = {"limit": limit, "deployment": deployment, "state": state}
    return Call("GET", "/api/v1/jobs", params=_given(params))


def job(job_id: int) -> Call:
    return Call("GET", f"/api/v1/jobs/{job_id}")


def job_logs(job_id: int, *, tail_bytes: int) -> Call:
    path = f"/api/v1/jobs/{job_id}/logs"
    return Call("GET", path, params={"tail_bytes": tail_bytes}, read=text_answer)


def cancel_job(job_id: int) -> Call:
    return Call("POST", f"/api/v1/jobs/{job_id}/cancel")


# -- batch scoring -------------------------------------------------------------------------


class BatchOptions(TypedDict, total=False):
    """`version` to score with (the champion when absent), `chunk_rows` per chunk, and
    `resume`: an earlier batch job to continue (its input, version and chunks are kept)."""

    version: int | None
    chunk_rows: int | None
    resume: int | None


def batch(deployment: str, *, input: str | None, options: BatchOptions) -> Call:
    body = _given({"input": input, **options})
    return Call("POST", f"/api/v1/deployments/{deployment}/batch", json=body)


def batch_output(job_id: int) -> Call:
    """A batch job's output as one Parquet file; sent streaming, saved by the client."""
    return Call("GET", f"/api/v1/jobs/{job_id}/output")


def partial_path(path: Path) -> Path:
    """Where a download is written until it is whole, beside its destination."""
    return path.with_name(f".{path.name}.part")


# -- tokens and audit ----------------------------------------------------------------------


class TokenOptions(TypedDict, total=False):
    """`permissions` beyond the role, `deployments` it may call (all when absent) and
    `expires_in` (`30d`, `12h`) its life."""

    permissions: list[str] | None
    deployments: list[str] | None
    expires_in: str | None


def create_token(name: str, role: str, options: TokenOptions) -> Call:
    body: dict[str, Any] = {"name": name, "role": role}
    if options.get("permissions"):
        body["permissions"] = options.get("permissions")
    for key in ("deployments", "expires_in"):
        if options.get(key) is not None:
            body[key] = options.get(key)
    return Call("POST", "/api/v1/tokens", json=body)


def list_tokens() -> Call:
    return Call("GET", "/api/v1/tokens")


def revoke_token(token_id: int) -> Call:
    return Call("DELETE", f"/api/v1/tokens/{token_id}")


class AuditQuery(TypedDict, total=False):
    since: str | None
    actor: str | None
    action: str | None
    target: str | None


def audit(query: AuditQuery, *, limit: int) -> Steps:
    """Audit entries, newest first, up to `limit`, read page by page."""
    params = _given(dict(query))
    entries: list[JSON] = []
    before: int | None = None
    while len(entries) < limit:
        page_query = {**params, "limit": min(limit - len(entries), 1000)}
        if before is not None:
            page_query["before_id"] = before
        page = yield Call("GET", "/api/v1/audit", params=page_query)
        entries.extend(page["entries"])
        before = page["next_before_id"]
        if before is None:
            break
    return entries


def _given(params: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in params.items() if value is not None}


# -- data files ------------------------------------------------------------------------------

DATA_SUFFIXES = (".csv", ".parquet", ".pq")


def data_files(location: str | Path) -> list[Path]:
    """The caller's CSV/Parquet files a path, folder or glob names (none: not local)."""
    path = Path(location).expanduser()
    if path.is_file():
        return [path]
    if path.is_dir():
        found = [p for p in sorted(path.rglob("*")) if p.is_file()]
    else:
        parent = path.parent if path.parent.exists() else Path(".")
        found = sorted(p for p in parent.glob(path.name) if p.is_file())
    return [p for p in found if p.suffix.lower() in DATA_SUFFIXES]


def upload_data(files: Sequence[tuple[str, BinaryIO]]) -> Call:
    """Send the caller's data files (name, open file) to the server, which keeps them under
    its data root and answers with the path to name as retrain data."""
    parts = [("files", (name, handle, "application/octet-stream")) for name, handle in files]
    return Call("POST", "/api/v1/data", files=parts)
