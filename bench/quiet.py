"""How much CPU other work on the machine used while the suite measured: the machine's busy
time from /proc/stat minus what the suite itself, wrk and the server under test used.

On a shared 2-core machine someone's test run can halve a server's throughput; this gauge
makes such a run visible in the report, and lets the suite wait for a quiet machine and
measure again instead of publishing it.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass

from bench.memory import PROC, descendants

TICK_S = 1 / os.sysconf("SC_CLK_TCK")


def busy_s() -> float:
    """CPU seconds spent in user and system mode on every core since boot (interrupts and
    softirqs, which loopback traffic causes on behalf of everyone, are left out)."""
    fields = (PROC / "stat").read_text().split("\n", 1)[0].split()
    user, nice, system = (int(x) for x in fields[1:4])
    return (user + nice + system) * TICK_S


def process_s(pid: int) -> float:
    """CPU seconds of one process, with the children it has reaped (0 once it is gone)."""
    try:
        fields = (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(x) for x in fields[11:15]) * TICK_S


def tree_s(pid: int | None) -> float:
    """CPU seconds of `pid` and its descendants."""
    return 0.0 if pid is None else sum(process_s(member) for member in descendants(pid))


def own_s() -> float:
    """CPU seconds of this process and the children it has waited for (wrk runs)."""
    mine = resource.getrusage(resource.RUSAGE_SELF)
    reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
    return mine.ru_utime + mine.ru_stime + reaped.ru_utime + reaped.ru_stime


@dataclass
class Meter:
    """Started before a measured run; `others_cores()` after it says how many cores, on
    average, processes outside the server tree and the suite kept busy meanwhile."""

    server_pid: int | None = None

    def __post_init__(self) -> None:
        self._start = self._sample()

    def _sample(self) -> tuple[float, float, float, float]:
        return time.monotonic(), busy_s(), tree_s(self.server_pid), own_s()

    def others_cores(self) -> float:
        now = self._sample()
        elapsed, busy, tree, own = (b - a for a, b in zip(self._start, now, strict=True))
        return max(0.0, busy - tree - own) / max(elapsed, 1e-3)


def wait_quiet(
    server_pid: int | None, *, cores: float, max_wait_s: float, sample_s: float = 1.0
) -> float:
    """Sample until other work uses less than `cores`, for `max_wait_s` at most; returns the
    last sample (the caller measures anyway after the wait)."""
    deadline = time.monotonic() + max_wait_s
    while True:
        meter = Meter(server_pid)
        time.sleep(sample_s)
        others = meter.others_cores()
        if others < cores or time.monotonic() >= deadline:
            return others
        time.sleep(min(5.0, max(0.0, deadline - time.monotonic())))
