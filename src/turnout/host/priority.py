"""CPU priority of runner processes.

On Linux a nice value belongs to a thread, so a process's priority is set on each of its
threads (threads it starts later inherit it from the one that starts them).
"""

from __future__ import annotations

import contextlib
import os
import resource
from pathlib import Path

LOW_PRIORITY = 10
"""The nice value of runners holding only shadows: well behind live work (a tenth of a
normal process's share of a busy CPU), without being starved outright."""
LOW_PRIORITY_PATIENCE = 6.0
"""How many times the hang limit a low-priority runner's call may take before it counts as
hung: on a saturated machine it waits for the CPU, which is not a hang."""


def can_raise() -> bool:
    """Whether this process may bring a lowered priority back to normal (root, or an
    RLIMIT_NICE that allows nice 0)."""
    return os.geteuid() == 0 or resource.getrlimit(resource.RLIMIT_NICE)[0] >= 20


def set_priority(pid: int, nice: int) -> None:
    """Give every thread of `pid` the nice value `nice`; a process gone meanwhile is fine."""
    try:
        threads = [int(tid) for tid in os.listdir(Path("/proc") / str(pid) / "task")]
    except OSError:
        threads = [pid]
    for tid in threads:
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, tid, nice)


CAN_RAISE = can_raise()
