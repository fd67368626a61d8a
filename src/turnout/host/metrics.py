"""The model host's state as Prometheus families: what is loaded, memory, loads, evictions."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from turnout.errors import TurnoutError


class HostCollector(Collector):
    def __init__(self, status: Callable[[], dict[str, Any]]) -> None:
        self._status = status

    def collect(self) -> Iterator[Metric]:
        try:
            status = self._status()
        except TurnoutError:
            return
        if not status:
            return
        models = status["models"]
        yield GaugeMetricFamily(
            "turnout_host_memory_budget_bytes",
            "Memory all loaded models may take on this node.",
            value=status["budget_bytes"],
        )
        yield GaugeMetricFamily(
            "turnout_host_memory_used_bytes",
            "Memory the loaded models take on this node (as measured when loaded).",
            value=status["used_bytes"],
        )
        runners = GaugeMetricFamily(
            "turnout_host_runners", "Runner processes by isolation class.", labels=["isolation"]
        )
        for isolation in ("shared", "dedicated", "check"):
            count = sum(1 for r in status["runners"] if r["isolation"] == isolation)
            runners.add_metric([isolation], count)
        yield runners
        yield CounterMetricFamily(
            "turnout_host_runner_restarts", "Runners lost (died or hung).", value=status["restarts"]
        )
        per_model: dict[str, GaugeMetricFamily | CounterMetricFamily] = {
            "loaded": GaugeMetricFamily(
                "turnout_host_model_loaded", "Replicas of the version loaded.", labels=["model"]
            ),
            "memory_bytes": GaugeMetricFamily(
                "turnout_host_model_memory_bytes", "Memory of one loaded copy.", labels=["model"]
            ),
            "hits": CounterMetricFamily(
                "turnout_host_model_hits", "Calls answered by loaded copies.", labels=["model"]
            ),
            "misses": CounterMetricFamily(
                "turnout_host_model_misses", "Requests that found it unloaded.", labels=["model"]
            ),
            "loads": CounterMetricFamily(
                "turnout_host_model_loads", "Times it was loaded.", labels=["model"]
            ),
            "evictions": CounterMetricFamily(
                "turnout_host_model_evictions", "Times it was evicted.", labels=["model"]
            ),
            "cold_load_ms_max": GaugeMetricFamily(
                "turnout_host_model_cold_load_ms_max",
                "Slowest recent cold load (request to loaded), ms.",
                labels=["model"],
            ),
        }
        for model in models:
            for field, family in per_model.items():
                value = len(model["runners"]) if field == "loaded" else model.get(field)
                if value is not None:
                    family.add_metric([model["key"]], float(value))
        yield from per_model.values()
        yield CounterMetricFamily(
            "turnout_host_evictions", "Models unloaded to make room.", value=status["evictions"]
        )
