"""The model host's configuration, from the server's settings, and the runners' environment."""

from __future__ import annotations

import logging
import os
import pwd
import re
import stat
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import turnout
from turnout.settings import Settings
from turnout.store.artifacts import is_local

log = logging.getLogger("turnout.host")


@dataclass(frozen=True, kw_only=True)
class HostConfig:
    run_dir: Path
    artifact_root: str
    work_dir: Path
    allow_pickle: bool
    budget_bytes: int
    pool_size: int
    hang_s: float
    load_timeout_s: float
    check_timeout_s: float
    memory_growth_mb: int
    env: dict[str, str]
    runner_uid: int | None = None
    """The unprivileged user runners become when the server runs as root."""
    runner_gid: int | None = None
    hidden: tuple[Path, ...] = ()
    """The server's state (home, artifact store) that runners staying root cannot see."""
    """Environment of the template and so of every runner: no credentials."""


LOAD_TIMEOUT_S = 120.0
KEPT_VARIABLES = {"TURNOUT_LOG_LEVEL"}
SECRET = re.compile(r"(TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|_KEY$|^PG|^DATABASE_URL$)", re.I)
ONE_THREAD = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
"""Many runners share the cores: each runs its numeric libraries on one thread unless the
operator says otherwise."""


def runner_env(environ: dict[str, str]) -> dict[str, str]:
    """What model code sees: no turnout settings (database URL, tokens, webhook secret) and
    nothing that looks like a credential."""
    env = {
        name: value
        for name, value in environ.items()
        if (not name.startswith("TURNOUT_") or name in KEPT_VARIABLES) and not SECRET.search(name)
    }
    for name in ONE_THREAD:
        env.setdefault(name, "1")
    return env


def host_config(run_dir: Path, settings: Settings | None = None) -> HostConfig:
    settings = settings or Settings()
    return HostConfig(
        run_dir=run_dir,
        artifact_root=settings.artifacts,
        work_dir=settings.cache_dir / "load",
        allow_pickle=settings.allow_pickle,
        budget_bytes=settings.model_memory_bytes,
        pool_size=settings.pool_size,
        hang_s=settings.runner_hang_ms / 1000,
        load_timeout_s=LOAD_TIMEOUT_S,
        check_timeout_s=settings.register_timeout_ms / 1000,
        memory_growth_mb=settings.runner_memory_mb,
        env=runner_env(dict(os.environ)),
        **_runner_user(settings.runner_user),
        hidden=_state_folders(settings),
    )


def _state_folders(settings: Settings) -> tuple[Path, ...]:
    """The server's home and stores, minus any that Python or turnout live in (hiding
    those would leave a runner unable to import anything)."""
    code = python_paths()
    folders = {settings.home.resolve(), settings.log_root.resolve()}
    if is_local(settings.artifacts):
        folders.add(Path(settings.artifacts).resolve())
    kept = {f for f in folders if not any(p == f or f in p.parents or p in f.parents for p in code)}
    # a folder inside another is hidden with it (and could not be mounted over once it is)
    return tuple(sorted(f for f in kept if not any(o in f.parents for o in kept)))


def _runner_user(name: str) -> dict[str, int | None]:
    """As root, runners become `name` (TURNOUT_RUNNER_USER); otherwise they stay this user,
    who already is not root. They can only do so when that user can read Python and the
    installed packages: with Python under a private folder (say /root/.pyenv) they stay
    root, and the server says so once at start."""
    none: dict[str, int | None] = {"runner_uid": None, "runner_gid": None}
    if os.geteuid() != 0:
        return none
    try:
        user = pwd.getpwnam(name)
    except KeyError:
        raise ValueError(
            f"TURNOUT_RUNNER_USER: no user {name!r} on this machine to run model code as"
        ) from None
    hidden = unreadable_to_others(python_paths())
    if hidden is not None:
        log.warning(
            "model code runs as root, not as %r: %s is not readable by other users (install "
            "Python and turnout where every user may read them to run models unprivileged)",
            name,
            hidden,
        )
        return none
    return {"runner_uid": user.pw_uid, "runner_gid": user.pw_gid}


def python_paths() -> list[Path]:
    """What a runner must read: the interpreter's library, the installed packages, turnout."""
    paths = {Path(sysconfig.get_paths()[key]) for key in ("stdlib", "purelib", "platlib")}
    paths.add(Path(turnout.__file__).parent)
    paths.add(Path(sys.executable).resolve())
    return sorted(paths)


def unreadable_to_others(paths: list[Path]) -> Path | None:
    """The first path (or parent folder) that a user other than its owner cannot reach."""
    for path in paths:
        for part in [*reversed(path.parents), path]:
            try:
                mode = part.stat().st_mode
            except OSError:
                return part
            needed = stat.S_IXOTH if part.is_dir() else stat.S_IROTH
            if not mode & needed:
                return part
    return None
