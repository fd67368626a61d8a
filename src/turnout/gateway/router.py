"""Routing policy: which version answers a request, and which shadows get a copy.

Shares are in basis points of 10,000 so 0.5% splits stay exact. With a sticky key the
same key always lands in the same bucket (one customer always sees the same version);
without one, each request draws at random.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

from turnout.store.records import Role, RoutingConfig

BUCKETS = 10_000


@dataclass(frozen=True, slots=True)
class Plan:
    """Who answers this request and who shadows it."""

    version: int
    role: Role
    shadows: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Router:
    """A revision's traffic split, precomputed once when the revision goes live."""

    champion: int
    bands: tuple[tuple[int, int], ...]
    """(upper bucket bound, version) for each challenger, in order."""
    shadow_shares: tuple[tuple[int, int], ...]
    """(version, buckets out of 10,000 that get a copy)."""

    @classmethod
    def of(cls, config: RoutingConfig) -> Router:
        bands, upper = [], 0
        for version, percent in sorted(config.challengers.items()):
            upper += round(percent * BUCKETS / 100)
            bands.append((upper, version))
        shadows = tuple(
            (version, round(percent * BUCKETS / 100))
            for version, percent in sorted(config.shadows.items())
        )
        return cls(config.champion, tuple(bands), shadows)

    def plan(self, key: str | None = None) -> Plan:
        bucket = bucket_of(key) if key is not None else random.randrange(BUCKETS)
        version, role = self.champion, Role.CHAMPION
        for upper, challenger in self.bands:
            if bucket < upper:
                version, role = challenger, Role.CHALLENGER
                break
        shadows = tuple(
            v
            for v, share in self.shadow_shares
            if share >= BUCKETS or random.randrange(BUCKETS) < share
        )
        return Plan(version, role, shadows)


def bucket_of(key: str) -> int:
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS
