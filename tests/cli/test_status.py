"""`turnout status` stays readable at any width: nothing is cut to "vers…"."""

from __future__ import annotations

import io
from typing import Any

import pytest
from rich.console import Console

from turnout.cli.monitoring import render_status
from turnout.monitoring.groups import GroupStats


def metrics() -> dict[str, Any]:
    """A /metrics answer with a champion, a challenger and a shadow."""
    accuracy = {"value": 0.9312, "ci_low": 0.9121, "ci_high": 0.9463}
    performance = {"task": "classification", "n": 512, "accuracy": accuracy}
    groups = [
        GroupStats(deployment="churn-prod", version=3, role="champion", requests=123456,
                   ok=123000, errors=300, timeouts=56, fallbacks=100, latency_p50_ms=1.234,
                   latency_p95_ms=9.87, latency_p99_ms=12.345, actuals=512, correct=477,
                   accuracy=0.9316, performance=performance),
        GroupStats(deployment="churn-prod", version=4, role="challenger", requests=13717,
                   ok=13700, errors=17, latency_p50_ms=1.5, latency_p99_ms=15.25),
        GroupStats(deployment="churn-prod", version=5, role="shadow", requests=2000,
                   ok=2000, latency_p50_ms=2.5, latency_p99_ms=30.0),
    ]  # fmt: skip
    drift = {
        "3": {"rows": 512, "baseline": True, "drifted": ["age", "income", "tenure"],
              "features": {name: {"level": "none"} for name in "abcdefghijkl"},
              "prediction": {"level": "moderate"}},
        "4": {"rows": 10, "baseline": True, "features": {"a": {"level": "insufficient"}}},
        "5": {"rows": 0, "baseline": False, "features": {}},
    }  # fmt: skip
    return {
        "deployment": "churn-prod",
        "model": "churn",
        "window": "24h",
        "groups": [group.to_dict() for group in groups],
        "drift": drift,
        "logging": {},
    }


def rendered(width: int) -> str:
    out = Console(width=width, file=io.StringIO(), color_system=None, legacy_windows=False)
    render_status(metrics(), out=out)
    text = out.file.getvalue()  # type: ignore[attr-defined]
    assert isinstance(text, str)
    return text


@pytest.mark.parametrize("width", [80, 60, 40, 30])
def test_narrow_consoles_never_cut_a_value(width: int) -> None:
    text = rendered(width)
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= width


@pytest.mark.parametrize("width", [80, 60])
def test_narrow_consoles_get_every_value_on_one_line(width: int) -> None:
    text = rendered(width)
    for value in ("champion", "challenger", "shadow", "123456", "12.35", "0.3%",
                  "acc 93.1% (91.2%-94.6%)", "3/12, output moderate", "no baseline"):  # fmt: skip
        assert value in text, value


def test_at_80_columns_traffic_and_quality_are_two_tables() -> None:
    text = rendered(80)
    assert "churn-prod (churn), last 24h: traffic" in text
    assert "churn-prod (churn), last 24h: quality" in text
    assert "3 champion" in text
    assert "4 challenger" in text


def test_a_wide_console_gets_one_table() -> None:
    text = rendered(200)
    assert ": traffic" not in text
    header = next(line for line in text.splitlines() if "quality (95% CI)" in line)
    for column in ("version", "role", "answers", "failed", "p99 ms", "drifted features"):
        assert column in header


def test_failed_counts_errors_and_timeouts() -> None:
    # champion: (300 errors + 56 timeouts) / 123456 requests
    assert f"{100 * 356 / 123456:.1f}%" in rendered(200)
