"""Settings for every turnout process, read from `TURNOUT_*` environment variables."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_PORT = 8700


class Settings(BaseSettings):
    """Where turnout keeps its state and how it serves; one instance per process."""

    model_config = SettingsConfigDict(env_prefix="TURNOUT_", extra="ignore")

    home: Path = Field(default_factory=lambda: Path.home() / ".turnout")
    """Folder for the default SQLite database, artifact store, caches and the admin token."""

    database_url: str | None = None
    """SQLAlchemy URL of the metadata DB; default `sqlite:///<home>/turnout.db`."""

    artifact_root: str | None = None
    """Artifact store location: a folder (default `<home>/artifacts`) or `s3://BUCKET/PREFIX`
    (credentials from boto3's usual chain)."""

    admin_token: SecretStr | None = None
    """The admin token of a cluster (from a secret): every node accepts it and none makes one
    of its own. Unset: each home gets a random one in `admin.token` on first start."""

    log_dir: str | None = None
    """Where the prediction log and actuals live: a folder, or `s3://BUCKET/PREFIX` (default:
    `log` beside the artifact store, in a folder or in the bucket). Nodes that share one (an
    object store, or a network file system) share status, metrics, drift, gates and
    retraining data: each writes and compacts only its own files and reads everyone's."""

    executor: str = Field(default="local", pattern=r"^(local|ray|ray://\S+)$")
    """Where retrain and batch jobs run: `local` (processes on the leading controller's
    machine), `ray` (the Ray cluster `RAY_ADDRESS` names) or `ray://HOST:PORT` (a Ray
    cluster's job submission address, its dashboard port, usually 8265)."""

    max_upload_mb: int = Field(default=4096, ge=1)
    """Largest upload the API takes: a model's files, or a caller's data files together."""

    tracing: Literal["off", "otlp"] = "off"
    """`otlp`: send OpenTelemetry traces of predictions by OTLP over HTTP, to where the usual
    `OTEL_EXPORTER_OTLP_*` variables say (needs the `tracing` extra)."""

    s3_endpoint_url: str | None = None
    """Endpoint of an S3-compatible service (MinIO, Ceph, R2); unset: AWS S3."""

    artifact_cache_mb: int = Field(default=2048, ge=1)
    """Bytes of fetched blobs each node keeps from an `s3://` artifact store (least recently
    used leave first)."""

    host: str = "127.0.0.1"
    """Interface the server binds to. Loopback unless asked otherwise."""

    port: int = DEFAULT_PORT
    """TCP port of the server (prediction and management APIs share it)."""

    grpc_port: int | None = Field(default=None, ge=0, le=65535)
    """TCP port of the OIP gRPC service (`inference.GRPCInferenceService`); 0 turns it off.
    `turnout serve` makes it the HTTP port + 1 (8701) when unset; an app built by
    `create_app` alone serves gRPC only when it is set."""

    workers: int = 1
    """Number of gateway worker processes."""

    url: str | None = None
    """Server URL the CLI and SDK talk to; default `http://127.0.0.1:8700`."""

    token: str | None = None
    """API token the CLI and SDK send; default: the admin token file of a local server."""

    predict_auth: Literal["optional", "required"] = "optional"
    """Whether prediction routes need a token: `optional` (tokens are checked when sent)
    or `required` (any role; health and server metadata stay open). Gateways check tokens
    against a copy of the token table reloaded every 5 s, so a revoked token may still
    predict for up to 5 s."""

    allow_pickle: bool = True
    """Whether pickle-based artifacts (joblib/pickle files) may be registered and loaded."""

    data_roots: str | None = None
    """Folders (separated by `os.pathsep`) whose files API callers may name as training data
    or holdout files; default `<home>/data`. Nothing outside them is read."""

    data_urls: str | None = None
    """Databases (SQLAlchemy URLs: the same backend, host, port, database, and user when one
    is named) and `s3://bucket/prefix` locations API callers may name as training data,
    separated by spaces or commas; default none."""

    refresh_interval_ms: int = 250
    """How often each gateway worker checks the metadata DB for routing changes."""

    predict_threads: int = 4
    """Threads per worker that run model code for in-process models."""

    runner: Literal["process", "thread"] = "process"
    """Where model code runs: `process` (the node's model host: runner processes shared by
    every gateway worker; a crash, hang or leak never reaches the gateway) or `thread`
    (inside each gateway worker; trusted single-model setups)."""

    model_memory_mb: int | None = Field(default=None, gt=0)
    """Memory all loaded models may take on this node, together; past it the least recently
    used idle models are unloaded. Default: half of the machine's memory."""

    runner_pool: int | None = Field(default=None, gt=0)
    """Runner processes that share models of built-in flavors; default: the core count."""

    register_timeout_ms: int = Field(default=60_000, gt=0)
    """How long registration waits for a new version to load and predict its examples."""

    runner_user: str = "nobody"
    """When the server runs as root, the unprivileged user its runner processes (model code)
    run as: they cannot read the server's home, database or tokens."""

    host_socket: str | None = None
    """Unix socket of the node's model host (set by `turnout serve` for its workers)."""

    runner_memory_mb: int = 4096
    """How far a runner process may grow past its loaded size before allocations fail and
    it is replaced (0: no limit)."""

    runner_hang_ms: int = 5_000
    """A runner call running this long is taken as hung: the process is killed and replaced."""

    max_pending_rows: int = 512
    """Rows that may wait for one version in a worker; past that, requests skip straight to
    the failover or fallback instead of queueing past their deadline."""

    shutdown_grace_ms: int = 0
    """On SIGTERM, report not-ready this long before draining, so load balancers move away."""

    log_predictions: bool = True
    """Whether every answer is written to the prediction log (metrics, actuals and drift
    depend on it)."""

    controller_interval_ms: int = 5_000
    """How often the controller looks at running rollouts and moves them forward."""

    webhook_url: str | None = None
    """Where rollout events are POSTed (every step, verdict, promotion, rollback)."""

    webhook_secret: str | None = None
    """Key of the `x-turnout-signature` header (HMAC-SHA256 of the body) on rollout events."""

    log_writer: Literal["process", "thread"] = "process"
    """Where the prediction log is encoded, compressed and written: `process` (a writer
    process beside each worker, off the serving CPU path) or `thread` (inside the worker)."""

    log_flush_ms: int = 1_000
    """How often each worker writes its buffered predictions to a Parquet segment."""

    log_buffer_rows: int = 200_000
    """Logged rows a worker may hold in memory; past that, new rows are dropped and counted
    (requests are never slowed down by logging)."""

    log_retention_days: int = 30
    """Days of prediction log and actuals kept; older days are deleted."""

    log_compact_s: int = 300
    """How often each worker merges its closed hours of small segments into one file."""

    sqlite_busy_timeout_ms: int = 30_000
    """How long a SQLite writer waits for the lock before giving up."""

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'turnout.db'}"

    @property
    def artifacts(self) -> str:
        return self.artifact_root or str(self.home / "artifacts")

    @property
    def log_root(self) -> Path:
        """The folder this node reads and writes the prediction log in: `TURNOUT_LOG_DIR`,
        else `log` beside local artifacts; with the log on an object store, the node's copy
        of it in the home (see `monitoring.remote`)."""
        from turnout.store.artifacts import is_local, local_path

        if self.log_dir is not None and is_local(self.log_dir):
            return local_path(self.log_dir)
        if self.log_dir is None and is_local(self.artifacts):
            return local_path(self.artifacts) / "log"
        return self.home / "log"

    @property
    def log_remote(self) -> str | None:
        """The object store holding the prediction log (`s3://...`), or None for a folder."""
        from turnout.store.artifacts import is_local

        if self.log_dir is not None:
            return None if is_local(self.log_dir) else self.log_dir
        return None if is_local(self.artifacts) else f"{self.artifacts.rstrip('/')}/log"

    @property
    def server_url(self) -> str:
        return (self.url or f"http://127.0.0.1:{DEFAULT_PORT}").rstrip("/")

    @property
    def admin_token_file(self) -> Path:
        return self.home / "admin.token"

    @property
    def model_memory_bytes(self) -> int:
        if self.model_memory_mb is not None:
            return self.model_memory_mb << 20
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")) // 2

    @property
    def pool_size(self) -> int:
        return self.runner_pool or os.cpu_count() or 1

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"
