"""What one version did in one role over a window: the contract between the prediction log,
the gates and the faces. Each rate is defined once, here.

No dependencies beyond the standard library: the CLI reads the API's groups with it too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from turnout.types import JSON

COUNTS = ("requests", "ok", "errors", "timeouts", "fallbacks", "actuals", "correct")


def rate(count: int, total: int) -> float | None:
    """`count / total`, or None when there is nothing to divide by."""
    return count / total if total else None


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupStats:
    """Traffic, outcomes, latency and graded answers of one (version, role).

    Every logged answer has one outcome: `ok`, `error` (the model raised or returned
    garbage), `timeout` (it missed the deadline) or `fallback` (no model answered; the
    fallback value did). The rates below divide those counts by `requests`.
    """

    deployment: str
    version: int
    role: str
    requests: int = 0
    ok: int = 0
    errors: int = 0
    timeouts: int = 0
    fallbacks: int = 0
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    latency_p99_ms: float | None = None
    first_ts: str | None = None
    last_ts: str | None = None
    actuals: int = 0
    correct: int = 0
    accuracy: float | None = None
    """Correct answers over answers with an actual (None without actuals)."""
    performance: Mapping[str, JSON] | None = None
    """The full metric report against actuals (with intervals), when it was computed."""
    agreement_rate: float | None = None
    """For a shadow: the share of its answers equal to the champion's, when known."""

    @property
    def error_rate(self) -> float | None:
        """errors / requests: answers with outcome `error`, as the metrics API reports it."""
        return rate(self.errors, self.requests)

    @property
    def timeout_rate(self) -> float | None:
        """timeouts / requests."""
        return rate(self.timeouts, self.requests)

    @property
    def fallback_rate(self) -> float | None:
        """fallbacks / requests."""
        return rate(self.fallbacks, self.requests)

    @property
    def failure_rate(self) -> float | None:
        """(errors + timeouts) / requests: every request the version failed to answer
        itself. What rollout gates hold against a plan's `max_error_rate`, and the
        "failed" column of `turnout status`."""
        return rate(self.errors + self.timeouts, self.requests)

    def to_dict(self, *, performance: bool = True) -> dict[str, JSON]:
        """The metrics API's entry for this group (`performance` False leaves that key out,
        for groups read without the full metric report)."""
        data: dict[str, JSON] = {
            "deployment": self.deployment,
            "version": self.version,
            "role": self.role,
            "requests": self.requests,
            "ok": self.ok,
            "errors": self.errors,
            "timeouts": self.timeouts,
            "fallbacks": self.fallbacks,
            "error_rate": self.error_rate,
            "timeout_rate": self.timeout_rate,
            "fallback_rate": self.fallback_rate,
            "latency_p50_ms": self.latency_p50_ms,
            "latency_p95_ms": self.latency_p95_ms,
            "latency_p99_ms": self.latency_p99_ms,
            "first_ts": self.first_ts,
            "last_ts": self.last_ts,
            "actuals": self.actuals,
            "correct": self.correct,
            "accuracy": self.accuracy,
        }
        if performance:
            data["performance"] = None if self.performance is None else dict(self.performance)
        if self.agreement_rate is not None:
            data["agreement_rate"] = self.agreement_rate
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GroupStats:
        """A group from the API's entry (or a stored snapshot of one); absent counts are 0."""

        def number(key: str) -> float | None:
            value = data.get(key)
            return None if value is None else float(value)

        counts = {key: int(data.get(key) or 0) for key in COUNTS}
        performance = data.get("performance")
        return cls(
            deployment=str(data.get("deployment") or ""),
            version=int(data.get("version") or 0),
            role=str(data.get("role") or ""),
            **counts,
            latency_p50_ms=number("latency_p50_ms"),
            latency_p95_ms=number("latency_p95_ms"),
            latency_p99_ms=number("latency_p99_ms"),
            first_ts=data.get("first_ts"),
            last_ts=data.get("last_ts"),
            accuracy=number("accuracy"),
            performance=performance if isinstance(performance, Mapping) else None,
            agreement_rate=number("agreement_rate"),
        )


def find_group(groups: list[GroupStats], version: int, role: str) -> GroupStats | None:
    """The group of `version` in `role`, if it answered (or was graded) in the window."""
    for group in groups:
        if group.version == version and group.role == role:
            return group
    return None
