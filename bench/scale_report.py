"""The scale benchmark's results as measures, each beside its DESIGN.md section 4 goal, and
the readers of eviction counters (Prometheus text, `deployments show`)."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from rich.table import Table

Results = dict[str, Any]
"""One scenario's raw numbers, as written to the results JSON."""

MLFLOW_REGISTRATIONS_PER_S = 3.6
GOAL_MODELS = 1000
GOAL_PSS_MB = 4096
SHOWN = 20
"""Deployments whose `deployments show` is searched for eviction counters."""


@dataclass(frozen=True)
class Measure:
    scenario: str
    name: str
    value: float | None
    unit: str
    goal: str = ""
    met: bool | None = None
    """None: no goal, or nothing measured."""

    @property
    def verdict(self) -> str:
        if self.value is None:
            return "not available"
        return {True: "met", False: "MISSED", None: ""}[self.met]


def _at_most(value: float | None, limit: float) -> bool | None:
    return None if value is None else value <= limit


def _at_least(value: float | None, limit: float) -> bool | None:
    return None if value is None else value >= limit


def _get(results: Results, *path: str) -> Any:
    for key in path:
        if not isinstance(results, dict):
            return None
        results = results.get(key)  # type: ignore[assignment]
    return results


def _calls(scenario: str, results: Results, args: argparse.Namespace) -> list[Measure]:
    reg, dep = results.get("register", {}), results.get("deploy", {})
    c = f"{args.concurrency} in flight"
    return [
        Measure(scenario, f"registrations/s ({c})", reg.get("per_s"), "/s",
                f">= 50 (MLflow: {MLFLOW_REGISTRATIONS_PER_S})", _at_least(reg.get("per_s"), 50)),
        Measure(scenario, "registration latency p50", reg.get("p50_ms"), "ms"),
        Measure(scenario, "registration failures", reg.get("failed"), "", "0",
                _at_most(reg.get("failed"), 0)),
        Measure(scenario, f"deployments created/s ({c})", dep.get("per_s"), "/s", ">= 10",
                _at_least(dep.get("per_s"), 10)),
        Measure(scenario, "deployment create latency p50", dep.get("p50_ms"), "ms"),
        Measure(scenario, "deployment failures", dep.get("failed"), "", "0",
                _at_most(dep.get("failed"), 0)),
    ]  # fmt: skip


def _fleet(results: Results, args: argparse.Namespace) -> list[Measure]:
    s = f"fleet, {results.get('models', args.models)} models"
    first, warm = results.get("first_request", {}), results.get("warm", {})
    answered = _get(results, "memory", "answered")
    idle = _get(results, "memory", "registered")
    per = results.get("pss_mb_per_deployment")
    model = results.get("model_memory_bytes_median")
    projected = None if idle is None or per is None else idle.pss_mb + per * GOAL_MODELS
    pss = None if answered is None else answered.pss_mb
    at_scale = results.get("models", 0) >= GOAL_MODELS
    one, many = warm.get("p50_ms_one_deployment"), warm.get("p50_ms_all_deployments")
    delta = None if one is None or many is None else many - one
    return [
        *_calls(s, results, args),
        Measure(s, "first request p50", first.get("p50_ms"), "ms"),
        Measure(s, "first request p99", first.get("p99_ms"), "ms", "<= 1000",
                _at_most(first.get("p99_ms"), 1000)),
        Measure(s, "first requests wrong or failed", first.get("failed"), "", "0",
                _at_most(first.get("failed"), 0)),
        Measure(s, "server tree PSS", pss, "MB", f"< {GOAL_PSS_MB} at {GOAL_MODELS} models",
                _at_most(pss, GOAL_PSS_MB) if at_scale else None),
        Measure(s, "server processes", None if answered is None else answered.processes, ""),
        Measure(s, "PSS added per deployment", per, "MB"),
        Measure(s, "model memory measured at registration, median",
                None if model is None else model / 1024, "KiB"),
        Measure(s, f"PSS projected to {GOAL_MODELS} models", projected, "MB",
                f"< {GOAL_PSS_MB}", _at_most(projected, GOAL_PSS_MB)),
        Measure(s, "warm p50, only deployment", one, "ms"),
        Measure(s, "warm p50, all deployed", many, "ms"),
        Measure(s, "warm p50 difference", delta, "ms", "<= 0.2", _at_most(delta, 0.2)),
        Measure(s, "evictions (/metrics)", results.get("evictions_metric"), ""),
        *(Measure(s, f"p50 {label}", value, "ms")
          for label, value in results.get("control_plane", {}).items()),
    ]  # fmt: skip


def _budget(results: Results, args: argparse.Namespace) -> list[Measure]:
    s = f"budget, {results.get('versions', args.versions)} versions, {results.get('budget_mb')} MB"
    traffic, first = results.get("traffic", {}), results.get("first_touch", {})
    memory = _get(results, "memory", "after_traffic")
    return [
        *_calls(s, results, args),
        Measure(s, f"requests wrong or failed (of {traffic.get('calls')})",
                traffic.get("failed"), "", "0", _at_most(traffic.get("failed"), 0)),
        Measure(s, "request p50 / all", traffic.get("p50_ms"), "ms"),
        Measure(s, "request p99 / all", traffic.get("p99_ms"), "ms"),
        Measure(s, f"first touch p99 ({first.get('requests')} deployments)",
                first.get("p99_ms"), "ms", "<= 1000", _at_most(first.get("p99_ms"), 1000)),
        Measure(s, "evictions (/metrics)", results.get("evictions_metric"), ""),
        Measure(s, f"evictions (deployments show, {SHOWN} deployments summed)",
                results.get("evictions_shown"), ""),
        Measure(s, "server tree PSS after traffic", None if memory is None else memory.pss_mb,
                "MB"),
        Measure(s, "server processes", None if memory is None else memory.processes, ""),
    ]  # fmt: skip


def measures(results: dict[str, Results], args: argparse.Namespace) -> list[Measure]:
    found = []
    if "fleet" in results:
        found += _fleet(results["fleet"], args)
    if "budget" in results:
        found += _budget(results["budget"], args)
    return found


def _number(value: float | None, unit: str) -> str:
    if value is None:
        return "not available"
    text = f"{value:,.0f}" if abs(value) >= 100 or float(value).is_integer() else f"{value:.3g}"
    return f"{text} {unit}".strip()


def tables(found: list[Measure]) -> list[Table]:
    """One table per scenario: each measure beside its goal."""
    grids: dict[str, Table] = {}
    for m in found:
        if m.scenario not in grids:
            grids[m.scenario] = grid = Table(title=m.scenario, title_justify="left")
            grid.add_column("measure")
            grid.add_column("value", justify="right")
            grid.add_column("goal (DESIGN.md section 4)")
            grid.add_column("verdict")
        style = {True: "green", False: "red", None: ""}[m.met]
        grids[m.scenario].add_row(m.name, _number(m.value, m.unit), m.goal, m.verdict, style=style)
    return list(grids.values())


def metric_total(exposition: str, word: str) -> float | None:
    """The largest per-metric sum among metrics whose name contains `word`: a total and its
    per-label breakdown (`..._evictions_total` and `..._model_evictions_total{model=...}`)
    count the same events, so they are not added together. None when there is none."""
    sums: dict[str, float] = {}
    for line in exposition.splitlines():
        if not line or line.startswith("#"):
            continue
        name = line.split("{")[0].split()[0].lower()
        if word in name and not name.endswith("_created"):  # _created: a counter's start time
            sums[name] = sums.get(name, 0.0) + float(line.rsplit(maxsplit=1)[1])
    return max(sums.values()) if sums else None


def _numbers_under(document: Any, word: str) -> Iterator[float]:
    if isinstance(document, dict):
        for key, value in document.items():
            if word in str(key).lower() and isinstance(value, int | float):
                yield float(value)
            else:
                yield from _numbers_under(value, word)
    elif isinstance(document, list):
        for item in document:
            yield from _numbers_under(item, word)


def evictions_in(documents: list[Any]) -> float | None:
    """Sum of every numeric field named like an eviction counter; None when there is none."""
    values = [v for d in documents for v in _numbers_under(d, "evict")]
    return sum(values) if values else None
