"""What the previous docs/benchmarks.md said, read back from its markdown: the sections other
benchmarks wrote (kept as they are), and the figures a new run is compared with."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from bench.budgets import Verdict
from bench.outcome import Outcome

SUITE_SECTION = re.compile(
    r"## (Budgets|Setup|Compared with an earlier run|\d+ connections?|Replicas\b.*)$"
)
"""Headings of the sections the suite writes; any other `## ` section of the file is kept."""
UNJUDGED = ("not in this suite", "not measured")
HEADER = re.compile(r"^Measured (\S+ \S+) UTC at commit `([^`]+)`", re.MULTILINE)
CONNECTIONS = re.compile(r"## (\d+) connections?$")


@dataclass(frozen=True)
class Figure:
    rps: float
    p99_ms: float


@dataclass
class Previous:
    """The previous suite report: when, at which commit, its budget lines and its rows."""

    measured: str = ""
    commit: str = ""
    budgets: dict[str, tuple[str, str]] = field(default_factory=dict)
    """Budget -> (what was measured, verdict)."""
    figures: dict[tuple[int, str], Figure] = field(default_factory=dict)
    """(connections, configuration label) -> its throughput and p99."""


def kept_sections(old: str) -> str:
    """The level-2 sections of the previous file that other benchmarks wrote (the scale
    figures, say), to append after a fresh suite report instead of losing them."""
    kept: list[str] = []
    keeping = False
    for line in old.splitlines():
        if line.startswith("## "):
            keeping = SUITE_SECTION.fullmatch(line.rstrip()) is None
        elif line.startswith("# "):
            keeping = False
        if keeping:
            kept.append(line)
    return "\n".join(kept).strip()


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def read(old: str) -> Previous:
    """Parse a report `render` wrote; whatever cannot be read is left out."""
    found = Previous()
    header = HEADER.search(old)
    if header:
        found.measured, found.commit = header.groups()
    section, table = "", ""
    for line in old.splitlines():
        if line.startswith("## "):
            section, table = line.rstrip(), ""
            continue
        if not line.startswith("|"):
            table = ""
            continue
        cells = _cells(line)
        if not table:
            table = cells[0]  # the header row names the table
            continue
        if cells[0].startswith("---"):
            continue
        if section == "## Budgets" and table.startswith("budget") and len(cells) == 3:
            found.budgets[cells[0]] = (cells[1], cells[2])
        match = CONNECTIONS.fullmatch(section)
        if match and table == "configuration" and len(cells) >= 4:
            rps, p99 = _number(cells[1]), _number(cells[3])
            if rps is not None and p99 is not None:
                found.figures[(int(match.group(1)), cells[0])] = Figure(rps, p99)
    return found


def _change(then: float, now: float) -> str:
    return f"{now / then - 1:+.0%}" if then else "—"


def section(previous: Previous, *, verdicts: list[Verdict], outcomes: list[Outcome]) -> list[str]:
    """Budgets and rows side by side with an earlier report's (empty without one)."""
    if not previous.figures:
        return []
    lines = [
        "## Compared with an earlier run",
        "",
        f"The earlier run: measured {previous.measured} UTC at commit `{previous.commit}` "
        "(the report this run replaced, or the one at `--compare-with`'s revision), on this "
        "machine with whatever other work ran then (see its Setup). Ratios within one run are "
        "the fair comparison; absolute figures move with the machine's other work.",
        "",
        "| budget | earlier run | this run |",
        "| --- | --- | --- |",
    ]
    for verdict in verdicts:
        if verdict.budget in previous.budgets and verdict.verdict not in UNJUDGED:
            measured, was = previous.budgets[verdict.budget]
            lines.append(
                f"| {verdict.budget} | {measured} ({was}) | {verdict.measured} "
                f"({verdict.verdict}) |"
            )
    lines += [
        "",
        "| configuration | connections | req/s earlier -> now | change | "
        "p99 ms earlier -> now | change |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for outcome in outcomes:
        for connections, load in sorted(outcome.loads.items()):
            then = previous.figures.get((connections, outcome.label))
            if then is None:
                continue
            lines.append(
                f"| {outcome.label} | {connections} | {then.rps:.0f} -> {load.rps:.0f} | "
                f"{_change(then.rps, load.rps)} | {then.p99_ms:.2f} -> {load.p99_ms:.2f} | "
                f"{_change(then.p99_ms, load.p99_ms)} |"
            )
    return [*lines, ""]
