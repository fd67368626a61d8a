"""One grammar for durations wherever a person types one (metric windows, retrain policies,
token lifetimes): seconds as a number, or a number with a unit, `90s`, `15m`, `1.5h`, `7d`."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator

UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
HINT = "a duration such as 90s, 15m, 1.5h or 7d, or a number of seconds"

_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])?\s*$")


def parse_duration(value: object) -> float:
    """Seconds, more than 0, from a number or a number with a unit; ValueError (saying what
    is accepted) for anything else."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"must be {HINT}, not {value!r}")
    if isinstance(value, str):
        match = _PATTERN.match(value.lower())
        if match is None:
            raise ValueError(f"must be {HINT}, not {value!r}")
        seconds = float(match.group(1)) * UNIT_S[match.group(2) or "s"]
    else:
        seconds = float(value)
    if not seconds > 0:
        raise ValueError(f"must be longer than 0, not {value!r}")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]
"""A pydantic field in seconds that people may write as `90s`, `15m`, `1.5h` or `7d`."""
