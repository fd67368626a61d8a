"""The model host's configuration, from the server's settings, and the runners' environment."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from turnout.settings import Settings


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
    )
