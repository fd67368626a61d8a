"""What a retrain policy reserves for its jobs on a cluster engine."""

from __future__ import annotations

import pytest

from turnout.errors import BadRequest
from turnout.lifecycle.retrain.policy import RetrainPolicy


def test_resources_default_to_one_cpu_and_are_read_from_yaml() -> None:
    assert RetrainPolicy.parse("data: {log: 7d}\n").resources.cpus == 1.0
    policy = RetrainPolicy.parse("data: {log: 7d}\nresources: {cpus: 2.5, memory_mb: 4096}\n")
    assert (policy.resources.cpus, policy.resources.memory_mb) == (2.5, 4096)


@pytest.mark.parametrize(
    "resources", ["{cpus: 0}", "{cpus: -1}", "{memory_mb: 0}", "{gpus: 1}", "{cpus: lots}"]
)
def test_impossible_resources_are_refused_naming_the_field(resources: str) -> None:
    with pytest.raises(BadRequest, match="resources"):
        RetrainPolicy.parse(f"data: {{log: 7d}}\nresources: {resources}\n")
