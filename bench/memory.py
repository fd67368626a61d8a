"""Memory of a whole process tree read from /proc (Linux): PSS, where a page shared by forked
processes counts once in total (split among them), and RSS, where it counts in each."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True)
class TreeMemory:
    processes: int
    pss_mb: float
    rss_mb: float


def _parents() -> dict[int, int]:
    """Every live process's parent, from /proc/PID/stat."""
    parents = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone since the listing
            continue
        # the command name (field 2) may hold spaces and parentheses: split after the last ')'
        fields = stat.rsplit(")", 1)[1].split()
        parents[int(entry.name)] = int(fields[1])
    return parents


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it, parents before children."""
    children: dict[int, list[int]] = {}
    for child, parent in _parents().items():
        children.setdefault(parent, []).append(child)
    tree, queue = [], [pid]
    while queue:
        current = queue.pop(0)
        tree.append(current)
        queue.extend(sorted(children.get(current, [])))
    return tree


def rollup_kb(pid: int) -> dict[str, int]:
    """The kB fields of /proc/PID/smaps_rollup (Rss, Pss, ...); empty if the process is gone."""
    try:
        text = (PROC / str(pid) / "smaps_rollup").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return {}
    fields = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] == "kB":
            fields[parts[0].rstrip(":")] = int(parts[1])
    return fields


def tree_memory(pid: int) -> TreeMemory:
    """PSS and RSS summed over `pid` and its descendants, in MiB."""
    rollups = [r for r in (rollup_kb(p) for p in descendants(pid)) if r]
    return TreeMemory(
        processes=len(rollups),
        pss_mb=sum(r.get("Pss", 0) for r in rollups) / 1024,
        rss_mb=sum(r.get("Rss", 0) for r in rollups) / 1024,
    )
