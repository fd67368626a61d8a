"""What the routes need, handed in by the composition root; plus the auth dependency."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Request

from turnout.api.auth import Principal, Tokens
from turnout.lifecycle.deployments import Deployments
from turnout.lifecycle.retire import Retirement
from turnout.lifecycle.retrain.service import Retraining
from turnout.lifecycle.rollouts import Rollouts
from turnout.lifecycle.routing import Routing
from turnout.lifecycle.sources import DataAccess
from turnout.monitoring.service import Monitor
from turnout.registry.service import Registry
from turnout.store.records import TokenRole


@dataclass(frozen=True, slots=True)
class Services:
    registry: Registry
    deployments: Deployments
    routing: Routing
    rollouts: Rollouts
    retraining: Retraining
    monitor: Monitor
    tokens: Tokens
    upload_dir: Path
    max_upload_bytes: int
    data_access: DataAccess
    """Which server-side files, databases and S3 prefixes callers may name (holdout files)."""
    hosting: Callable[[], dict[str, Any]] = dict
    """The node's model host: what is loaded where, memory, hits, misses, loads, evictions
    (empty when models run in the gateway's threads)."""

    @property
    def retirement(self) -> Retirement:
        """Archive and delete; it keeps no state of its own beyond the database."""
        return Retirement(self.deployments.db)


def services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


def require(role: TokenRole) -> Callable[[Request], Principal]:
    """A dependency that authenticates the caller and checks their role."""

    def check(request: Request) -> Principal:
        tokens = services(request).tokens
        principal = tokens.authenticate(request.headers.get("authorization"))
        tokens.authorize(principal, role)
        return principal

    return check


viewer = require(TokenRole.VIEWER)
deployer = require(TokenRole.DEPLOYER)
admin = require(TokenRole.ADMIN)
