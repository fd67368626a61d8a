"""What the validate step measured, as `gates.validation_verdict` reads it: the candidate (and
the champion) scored offline on the same labelled rows."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from turnout.types import JSON

Metrics = Mapping[str, JSON]
"""Metric name -> a number, or a `{"value", "ci_low", "ci_high"}` dict."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeFailure:
    probe: str
    """Which broken row, e.g. `missing age` or `high income`."""
    candidate: str
    """What went wrong with the candidate's answer."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Robustness:
    """Broken rows sent to both versions: the ones the candidate fails and the champion
    answers."""

    probes: int
    failures: int
    failed: tuple[ProbeFailure, ...] = ()
    """The first few failures."""

    def to_dict(self) -> dict[str, JSON]:
        failed: list[JSON] = [{"probe": f.probe, "candidate": f.candidate} for f in self.failed]
        return {"probes": self.probes, "failed": failed, "failures": self.failures}


@dataclass(frozen=True, slots=True, kw_only=True)
class ValidationReport:
    """One offline evaluation. Without a champion, the checks against it are skipped."""

    n: int = 0
    """Labelled rows scored."""
    source: str | None = None
    """Where the rows came from: a holdout file, or logged traffic with actuals."""
    candidate: Metrics = field(default_factory=dict)
    champion: Metrics | None = None
    scored: bool = False
    """Whether the candidate was scored (enough rows): then `agreement`, `correlation` and
    `latency_ms` were measured, each None when it could not be."""
    agreement: float | None = None
    """Share of rows where both versions gave the same answer."""
    correlation: float | None = None
    """Pearson correlation of the two versions' scores."""
    latency_ms: float | None = None
    """The candidate's mean time per row."""
    robustness: Robustness | None = None

    def measured(self) -> dict[str, JSON]:
        """What the verdict's evidence repeats: the source and what was measured."""
        data: dict[str, JSON] = {}
        if self.source is not None:
            data["source"] = self.source
        if self.scored:
            data.update(
                agreement=self.agreement, correlation=self.correlation, latency_ms=self.latency_ms
            )
        if self.robustness is not None:
            data["robustness"] = self.robustness.to_dict()
        return data
