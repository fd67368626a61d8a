"""Traffic shares, in percent of a deployment's live requests: the checks that routing
changes and rollout plans both make, worded once. Each returns the problem, or None."""

from __future__ import annotations

SHARE_STEP = 0.01
"""The finest share the router can split traffic by, in percent."""


def step_problem(percent: float) -> str | None:
    steps = percent / SHARE_STEP
    if abs(steps - round(steps)) > 1e-6:
        return f"traffic shares go in steps of {SHARE_STEP:g}%, not {percent:g}%"
    return None


def challenger_problem(percent: float) -> str | None:
    """A challenger answers a share of live traffic; all of it would be a promotion."""
    if not 0.0 < percent < 100.0:
        return f"must be between 0 and 100, not {percent:g} (100% is the promote step itself)"
    return step_problem(percent)


def shadow_problem(percent: float) -> str | None:
    """A shadow sees a copy of a share of live traffic, up to all of it."""
    if not 0.0 < percent <= 100.0:
        return f"must be more than 0 and at most 100, not {percent:g}"
    return step_problem(percent)


def mirror_problem(percent: float) -> str | None:
    """Like a shadow's, where 0 turns the mirror off."""
    if not 0.0 <= percent <= 100.0:
        return f"must be between 0 (off) and 100, not {percent:g}"
    return step_problem(percent)
