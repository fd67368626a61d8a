"""Pure decisions of the model host: which models to evict, where a model runs, how much
memory an unmeasured model is taken to need. No I/O; the supervisor applies them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from turnout.errors import ModelUnavailable

MIN_MODEL_BYTES = 256 << 10
"""Floor of a loaded model's accounted memory: a tiny model still costs something, and a
load that landed in already-mapped memory measures as nothing."""
UNMEASURED_FLOOR_BYTES = 16 << 20
UNMEASURED_FACTOR = 4
"""A version whose memory was never measured counts as four times its files, at least 16 MB."""
CODE_FLAVORS = frozenset({"python", "mlflow"})
PICKLE_SUFFIXES = (".joblib", ".pkl", ".pickle", ".sav")


class Isolation(StrEnum):
    SHARED = "shared"
    """Many models of built-in flavors in one of the pool's runners."""
    DEDICATED = "dedicated"
    """One model alone in its own runner: code-bearing models, and any model that once took
    a shared runner down."""
    CHECK = "check"
    """A one-off runner for a registration check, ended right after."""


@dataclass(frozen=True, slots=True)
class Resident:
    """One loaded copy of a model, as eviction sees it."""

    key: str
    runner: int
    memory_bytes: int
    last_used: float
    pinned: bool = False
    routed: bool = True
    busy: bool = False


def code_bearing(flavor: str, paths: Iterable[str]) -> bool:
    """Whether loading the version runs code that came with it (not only our libraries')."""
    if flavor in CODE_FLAVORS:
        return True
    return any(path.lower().endswith(PICKLE_SUFFIXES) for path in paths)


def isolation_for(*, code: bool, isolated: bool, override: Isolation | None) -> Isolation:
    """Code-bearing versions run alone unless a deployment asks to share; a model that once
    killed a shared runner runs alone whatever was asked."""
    if isolated:
        return Isolation.DEDICATED
    if override is not None:
        return override
    return Isolation.DEDICATED if code else Isolation.SHARED


def accounted_bytes(measured: int | None, files_bytes: int) -> int:
    """What a model counts against the budget: its measured memory, or a safe estimate."""
    if measured is None:
        return max(UNMEASURED_FLOOR_BYTES, UNMEASURED_FACTOR * files_bytes)
    return max(measured, MIN_MODEL_BYTES)


def choose_victims(
    residents: Iterable[Resident], *, used_bytes: int, need_bytes: int, budget_bytes: int
) -> list[Resident]:
    """The least recently used idle copies to unload so that `need_bytes` more fits.

    Copies no revision routes go first, then the rest oldest first; pinned and busy copies
    are never chosen. Raises when even all of them would not make room.
    """
    over = used_bytes + need_bytes - budget_bytes
    if over <= 0:
        return []
    candidates = sorted(
        (r for r in residents if not r.pinned and not r.busy),
        key=lambda r: (r.routed, r.last_used),
    )
    victims: list[Resident] = []
    freed = 0
    for resident in candidates:
        if freed >= over:
            break
        victims.append(resident)
        freed += resident.memory_bytes
    if freed < over:
        raise ModelUnavailable(
            f"the model memory budget is full ({used_bytes / 2**20:.0f} of "
            f"{budget_bytes / 2**20:.0f} MB, in pinned or busy models): no room for "
            f"{need_bytes / 2**20:.1f} MB more; raise TURNOUT_MODEL_MEMORY_MB"
        )
    return victims


def least_loaded(loads: Mapping[int, tuple[int, int]]) -> int:
    """The runner holding the fewest bytes (then models) of those given: runner -> (bytes,
    models)."""
    return min(loads, key=lambda runner: (loads[runner], runner))
