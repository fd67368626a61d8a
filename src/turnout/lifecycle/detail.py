"""What the controller keeps about a rollout between looks (the record's `state_detail`):
each challenge step's sequential test, the latest verdict of each step and, once promoted,
where it came from and the bar the new champion must hold while baking."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from turnout.monitoring.groups import GroupStats
from turnout.types import JSON

BEFORE_KEYS = (
    "requests", "ok", "errors", "timeouts", "fallbacks", "error_rate", "timeout_rate",
    "fallback_rate", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "actuals", "correct",
    "accuracy",
)  # fmt: skip
"""What is kept of the previous champion's record before the promotion."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Promotion:
    """How the rollout's version became champion."""

    from_revision: int
    """The revision before the promotion: where a rollback goes."""
    revision: int
    """The revision the promotion created."""
    previous_champion: int
    champion_before: GroupStats | None
    """The previous champion's record over the rollout before the promotion."""

    @property
    def champion_accuracy(self) -> float | None:
        """The bar the new champion's accuracy is held to while baking."""
        return self.champion_before.accuracy if self.champion_before is not None else None


@dataclass(frozen=True, slots=True, kw_only=True)
class RolloutDetail:
    tests: Mapping[str, dict[str, JSON]] = field(default_factory=dict)
    """Challenge step -> its sequential test's state, passed from one look to the next."""
    verdicts: Mapping[str, dict[str, JSON]] = field(default_factory=dict)
    """Step -> its latest verdict, with when it was given (what `rollout status` shows)."""
    promotion: Promotion | None = None

    def with_test(self, step: str, state: dict[str, JSON]) -> RolloutDetail:
        return replace(self, tests={**self.tests, step: state})

    def with_verdict(self, step: str, verdict: dict[str, JSON]) -> RolloutDetail:
        stamped = {**verdict, "at": datetime.now().astimezone().isoformat()}
        return replace(self, verdicts={**self.verdicts, step: stamped})

    def to_dict(self) -> dict[str, JSON]:
        data: dict[str, JSON] = {}
        if self.tests:
            data["test"] = dict(self.tests)
        if self.verdicts:
            data["verdicts"] = dict(self.verdicts)
        if self.promotion is not None:
            before = self.promotion.champion_before
            data.update(
                promoted_from_revision=self.promotion.from_revision,
                promoted_revision=self.promotion.revision,
                previous_champion=self.promotion.previous_champion,
                champion_before=None
                if before is None
                else {key: before.to_dict()[key] for key in BEFORE_KEYS},
                champion_accuracy=self.promotion.champion_accuracy,
            )
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RolloutDetail:
        promotion = None
        if data.get("promoted_from_revision") is not None:
            previous = int(data["previous_champion"])
            before = data.get("champion_before")
            promotion = Promotion(
                from_revision=int(data["promoted_from_revision"]),
                revision=int(data.get("promoted_revision") or 0),
                previous_champion=previous,
                champion_before=GroupStats.from_dict(
                    {**before, "version": previous, "role": "champion"}
                )
                if isinstance(before, Mapping)
                else None,
            )
        return cls(
            tests=dict(data.get("test") or {}),
            verdicts=dict(data.get("verdicts") or {}),
            promotion=promotion,
        )
