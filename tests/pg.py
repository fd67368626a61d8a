"""Throwaway PostgreSQL server for tests.

Starts a private cluster in a temporary directory on a free loopback port,
with durability switched off for speed. When running as root the server is
run as the ``postgres`` OS user, since ``initdb`` refuses to run as root.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

_REQUIRED = ("initdb", "pg_ctl", "postgres")
_RUN_AS = "postgres"
_DB_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def _has_bins(d: Path) -> bool:
    return all(os.access(d / name, os.X_OK) and (d / name).is_file() for name in _REQUIRED)


def _version_key(d: Path) -> tuple[int, ...]:
    # /usr/lib/postgresql/<version>/bin
    parts = re.findall(r"\d+", d.parent.name)
    return tuple(int(p) for p in parts) or (0,)


def find_pg_bin() -> Path | None:
    """Directory holding the PostgreSQL server binaries, or None.

    Order: ``TURNOUT_PG_BIN``, the highest ``/usr/lib/postgresql/*/bin``, PATH.
    """
    override = os.environ.get("TURNOUT_PG_BIN")
    if override:
        d = Path(override)
        return d if _has_bins(d) else None
    candidates = [d for d in Path("/usr/lib/postgresql").glob("*/bin") if _has_bins(d)]
    if candidates:
        return max(candidates, key=_version_key)
    initdb = shutil.which("initdb")
    if initdb:
        d = Path(initdb).resolve().parent
        if _has_bins(d):
            return d
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class PostgresServer:
    """A PostgreSQL server private to the test session.

    Use :meth:`start` (or the context manager protocol), :meth:`create_database`
    and :meth:`url`, then :meth:`stop`.
    """

    def __init__(self, bin_dir: Path | None = None, user: str = "postgres") -> None:
        found = bin_dir or find_pg_bin()
        if found is None:
            raise RuntimeError(
                "PostgreSQL server binaries (initdb, pg_ctl) not found; install the "
                "'postgresql' package or set TURNOUT_PG_BIN"
            )
        self.bin_dir = found
        self.user = user
        self.host = "127.0.0.1"
        self.port = 0
        self._root: Path | None = None
        self._run_as_root_user = hasattr(os, "geteuid") and os.geteuid() == 0
        self._started = False

    # -- paths -----------------------------------------------------------
    @property
    def root(self) -> Path:
        if self._root is None:
            raise RuntimeError("PostgreSQL server not started")
        return self._root

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "sock"

    @property
    def log_file(self) -> Path:
        return self.root / "postgres.log"

    # -- process helpers -------------------------------------------------
    def _cmd(self, args: Sequence[str]) -> list[str]:
        if self._run_as_root_user:
            return ["runuser", "-u", _RUN_AS, "--", *args]
        return list(args)

    def _run(self, args: Sequence[str], *, what: str) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            self._cmd(args),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=self.root,
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"{what} failed (exit {proc.returncode}): {' '.join(args)}\n"
                f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}\n{self._log_tail()}"
            )
        return proc

    def _log_tail(self, limit: int = 4000) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return ""
        return f"server log ({self.log_file}):\n{text[-limit:]}"

    def _temp_base(self) -> str | None:
        # The server user must be able to reach the directory; a private
        # TMPDIR (e.g. under /root) would not be traversable by it.
        if not self._run_as_root_user:
            return None
        base = tempfile.gettempdir()
        path = Path(base)
        while True:
            if not path.stat().st_mode & 0o001:
                return "/tmp"
            if path.parent == path:
                return base
            path = path.parent

    # -- lifecycle -------------------------------------------------------
    def start(self) -> PostgresServer:
        if self._started:
            return self
        self._root = Path(tempfile.mkdtemp(prefix="turnout-pg-", dir=self._temp_base()))
        try:
            self.socket_dir.mkdir()
            if self._run_as_root_user:
                shutil.chown(self.root, user=_RUN_AS, group=None)
                shutil.chown(self.socket_dir, user=_RUN_AS, group=None)
            self._run(
                [
                    str(self.bin_dir / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-A",
                    "trust",
                    "-U",
                    self.user,
                    "--no-sync",
                    "-E",
                    "UTF8",
                    "--locale=C",
                ],
                what="initdb",
            )
            self._start_server()
        except BaseException:
            self._cleanup_dir()
            raise
        return self

    def _start_server(self) -> None:
        last_error: RuntimeError | None = None
        # Retry on a port race (another process grabbing the port between
        # picking it and the server binding it).
        for _ in range(3):
            self.port = _free_port()
            opts = " ".join(
                [
                    "-F",
                    f"-p {self.port}",
                    f"-k '{self.socket_dir}'",
                    f"-c listen_addresses={self.host}",
                    "-c fsync=off",
                    "-c synchronous_commit=off",
                    "-c full_page_writes=off",
                    "-c max_connections=200",
                ]
            )
            try:
                self._run(
                    [
                        str(self.bin_dir / "pg_ctl"),
                        "-D",
                        str(self.data_dir),
                        "-l",
                        str(self.log_file),
                        "-w",
                        "-t",
                        "60",
                        "-o",
                        opts,
                        "start",
                    ],
                    what="pg_ctl start",
                )
            except RuntimeError as exc:
                last_error = exc
                self._pg_ctl_stop()
                continue
            self._started = True
            return
        assert last_error is not None
        raise last_error

    def create_database(self, name: str) -> str:
        """Create database ``name`` and return its SQLAlchemy URL."""
        if not _DB_NAME_RE.match(name):
            raise ValueError(f"invalid database name: {name!r}")
        if not self._started:
            raise RuntimeError("PostgreSQL server not started")
        createdb = self.bin_dir / "createdb"
        if os.access(createdb, os.X_OK):
            args = [str(createdb)]
        else:
            args = [shutil.which("createdb") or "createdb"]
        self._run(
            [*args, "-h", self.host, "-p", str(self.port), "-U", self.user, name],
            what="createdb",
        )
        return self.url(name)

    def url(self, dbname: str = "postgres") -> str:
        """SQLAlchemy URL for ``dbname`` on this server (psycopg 3 driver)."""
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{dbname}"

    def _postmaster_pid(self) -> int | None:
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    @staticmethod
    def _wait_gone(pid: int, timeout: float = 3.0) -> None:
        # pg_ctl returns once the pid file is gone; the detached postmaster may
        # still be briefly visible until its parent (init) reaps it.
        deadline = time.monotonic() + timeout
        proc = Path(f"/proc/{pid}")
        while proc.exists() and time.monotonic() < deadline:
            time.sleep(0.02)

    def _pg_ctl_stop(self) -> None:
        if self._root is None or not (self.data_dir / "postmaster.pid").exists():
            return
        pid = self._postmaster_pid()
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            subprocess.run(
                self._cmd(
                    [
                        str(self.bin_dir / "pg_ctl"),
                        "-D",
                        str(self.data_dir),
                        "-m",
                        "immediate",
                        "-w",
                        "-t",
                        "30",
                        "stop",
                    ]
                ),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=60,
                check=False,
                cwd=self.root,
            )
        if pid is not None:
            self._wait_gone(pid)

    def _cleanup_dir(self) -> None:
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None

    def stop(self) -> None:
        """Stop the server immediately and remove its files."""
        try:
            self._pg_ctl_stop()
        finally:
            self._started = False
            self._cleanup_dir()

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
