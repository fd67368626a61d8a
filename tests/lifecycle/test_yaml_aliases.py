"""Specs, plans and retrain policies refuse YAML anchors and aliases (billion laughs)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from turnout.errors import BadRequest
from turnout.lifecycle.apply import parse_spec
from turnout.lifecycle.plans import Plan
from turnout.lifecycle.retrain.policy import RetrainPolicy


def laughs(levels: int = 9) -> str:
    """A few hundred bytes that a plain YAML loader expands into 10**levels strings."""
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, levels + 1):
        refs = ", ".join([f"*a{level - 1}"] * 10)
        lines.append(f"a{level}: &a{level} [{refs}]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    "parse",
    [parse_spec, Plan.from_yaml, RetrainPolicy.parse],
    ids=["apply", "plan", "retrain-policy"],
)
def test_a_billion_laughs_document_is_refused_before_it_expands(
    parse: Callable[[str], object],
) -> None:
    with pytest.raises(BadRequest, match=r"anchors and aliases .* are not accepted"):
        parse("deployment: d\nmodel: m\n" + laughs())


def test_a_single_alias_is_refused_with_its_place() -> None:
    with pytest.raises(BadRequest, match=r"line 1, column 13: anchors and aliases"):
        parse_spec("deployment: &d d\nmodel: *d\n")
