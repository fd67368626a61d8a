"""`turnout serve`: run the gateway and management API with uvicorn."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import typer
import uvicorn
from pydantic import ValidationError

from turnout.api.auth import Tokens
from turnout.cli.output import console
from turnout.client import served_port_file
from turnout.host.client import HostProcess
from turnout.settings import Settings
from turnout.store.artifacts import open_artifact_store
from turnout.store.db import Database
from turnout.store.modes import private_home


def prepare(settings: Settings) -> str:
    """Migrate the DB and make the admin token once, before any worker starts; a store that
    cannot be reached stops the server here, named, rather than in every worker."""
    private_home(settings.home)
    open_artifact_store(settings.artifacts)
    db = Database.from_url(settings.db_url, busy_timeout_ms=settings.sqlite_busy_timeout_ms)
    try:
        db.migrate()
        return Tokens(db).ensure_admin(settings.admin_token_file, _given(settings))
    finally:
        db.dispose()


def _given(settings: Settings) -> str | None:
    return settings.admin_token.get_secret_value() if settings.admin_token else None


def serve(
    host: str = typer.Option(None, help="Interface to bind (default 127.0.0.1)."),
    port: int = typer.Option(None, help="TCP port (default 8700)."),
    grpc_port: int = typer.Option(
        None, help="OIP gRPC port (default: the HTTP port + 1, so 8701; 0 turns gRPC off)."
    ),
    workers: int = typer.Option(None, help="Gateway worker processes (default 1)."),
    home: Path = typer.Option(None, help="State folder (default ~/.turnout or TURNOUT_HOME)."),
    log_level: str = typer.Option("warning", help="uvicorn log level."),
) -> None:
    """Serve predictions (OIP v2, native JSON) and the management API on one port, and OIP
    gRPC on another."""
    overrides = {
        "host": host, "port": port, "grpc_port": grpc_port, "workers": workers, "home": home
    }  # fmt: skip
    for key, value in overrides.items():
        if value is not None:
            os.environ[f"TURNOUT_{key.upper()}"] = str(value)
    try:
        settings = Settings()
    except ValidationError as exc:
        raise typer.BadParameter(_setting_errors(exc)) from None
    if settings.workers < 1:
        raise typer.BadParameter("--workers must be at least 1")
    prepare(settings)
    _record_port(settings)
    os.environ["TURNOUT_HOME"] = str(settings.home)
    os.environ["TURNOUT_GRPC_PORT"] = str(_grpc_port(settings))
    model_host = None
    if settings.runner == "process":  # one model host for the node, shared by every worker
        model_host = HostProcess.start()
        os.environ["TURNOUT_HOST_SOCKET"] = str(model_host.socket)
    grpc_port = int(os.environ["TURNOUT_GRPC_PORT"])
    console.print(
        f"turnout serving on http://{settings.host}:{settings.port} "
        + (f"and gRPC {settings.host}:{grpc_port} " if grpc_port else "")
        + f"({settings.workers} worker{'s' if settings.workers > 1 else ''}); "
        f"home {settings.home}; admin token in {settings.admin_token_file}"
    )
    try:
        _run(settings, log_level)
    finally:
        if model_host is not None:
            model_host.stop()


def _grpc_port(settings: Settings) -> int:
    """The port every worker serves gRPC on (0: none), checked free before any starts.

    A port asked for that is taken is an error; the default one (HTTP + 1) being taken
    only turns gRPC off, with a warning, so that HTTP alone still serves.
    """
    asked = settings.grpc_port
    port = settings.port + 1 if asked is None else asked
    if port == 0:
        return 0
    if port > 65535 or not _free(settings.host, port):
        if asked is not None:
            raise typer.BadParameter(
                f"gRPC port {port} on {settings.host} is in use; choose another with "
                "--grpc-port (TURNOUT_GRPC_PORT), or 0 to turn gRPC off"
            )
        console.print(
            f"[yellow]gRPC off: its default port {port} (HTTP port + 1) is not free; "
            "choose one with --grpc-port[/yellow]"
        )
        return 0
    return port


def _free(host: str, port: int) -> bool:
    """Whether nothing listens on the port: bound without SO_REUSEPORT, so even another
    gRPC server's socket (which sets it) counts as taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _record_port(settings: Settings) -> None:
    """The port, for the CLI and SDK to know this home's server: they send its admin token
    to a loopback URL on this port only."""
    path = served_port_file(settings)
    partial = path.with_suffix(".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(f"{settings.port}\n")
    os.replace(partial, path)


def _setting_errors(exc: ValidationError) -> str:
    """Pydantic's errors, each naming the environment variable to fix."""
    lines = []
    for error in exc.errors():
        name = "_".join(str(part) for part in error["loc"][:1]).upper()
        lines.append(f"TURNOUT_{name}: {error['msg']} (got {error.get('input')!r})")
    return "; ".join(lines)


def _run(settings: Settings, log_level: str) -> None:
    uvicorn.run(
        "turnout.app:create_app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        loop="uvloop",
        http="httptools",
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=30,
    )
