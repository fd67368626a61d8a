"""Declarative deployments applied against a real metadata DB, registry and routing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.registry import open_registry
from tests.fixtures.routing_models import constant_model
from turnout.errors import BadRequest
from turnout.lifecycle.apply import Applier, parse_spec
from turnout.lifecycle.deployments import Deployments
from turnout.lifecycle.rollouts import Rollouts
from turnout.lifecycle.routing import Routing
from turnout.registry.service import NewVersion, Registry
from turnout.store import metadata as md
from turnout.store import rollouts as rs
from turnout.store.records import RevisionRecord

SPEC = """
deployment: d
model: m
version: 1
timeout_ms: 200
failover: 2
fallback: 0
log_payloads: all
rollout:
  warmup: {min_requests: 20}
  bake: {duration_s: 1}
"""


class Stack:
    def __init__(self, root: Path, registry: Registry) -> None:
        self.db = registry.db
        self.routing = Routing(self.db, registry, ack_timeout_s=1)
        self.rollouts = Rollouts(self.db, registry, self.routing)
        self.deployments = Deployments(self.db, registry)
        self.applier = Applier(self.deployments, self.routing, self.rollouts, self.db)
        for value in (1, 2, 3):
            registry.register(NewVersion(
                model="m", source=constant_model(root / f"v{value}", value), flavor="python"
            ))  # fmt: skip

    def apply(self, spec: dict[str, Any] | str) -> dict[str, Any]:
        return self.applier.apply(spec, actor="alice")

    def history(self) -> list[RevisionRecord]:
        return self.deployments.history("d")

    def audit(self) -> list[dict[str, Any]]:
        with self.db.read() as conn:
            return md.list_audit(conn)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with open_registry(tmp_path) as registry:
        yield Stack(tmp_path, registry)


def spec(**changes: Any) -> dict[str, Any]:
    """SPEC as a mapping, with `changes` (a None value removes the key)."""
    data = parse_spec(SPEC).model_dump(mode="json", by_alias=True)
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def test_a_spec_creates_the_deployment_with_its_settings(stack: Stack) -> None:
    report = stack.apply(SPEC)

    assert report == {
        "deployment": "d",
        "created": True,
        "changed": [],
        "revision": 1,
        "rollout": None,
        "acknowledged": True,
    }
    config = stack.routing.current("d")
    assert (config.champion, config.timeout_ms, config.failover) == (1, 200, 2)
    assert (config.has_fallback, config.fallback, config.log_payloads) == (True, 0, 1.0)
    with stack.db.read() as conn:
        plan = md.get_rollout_plan(conn, "d")
    assert plan is not None
    assert plan["warmup"]["min_requests"] == 20


def test_applying_the_same_spec_twice_writes_nothing(stack: Stack) -> None:
    stack.apply(SPEC)
    audit = stack.audit()

    report = stack.apply(SPEC)

    assert report["created"] is False
    assert report["changed"] == []
    assert report["revision"] == 1
    assert report["acknowledged"] is None
    assert len(stack.history()) == 1
    assert stack.audit() == audit


def test_a_changed_setting_appends_one_revision_with_only_that_change(stack: Stack) -> None:
    stack.apply(SPEC)
    before = stack.routing.current("d")

    report = stack.apply(spec(timeout_ms=300))

    assert report["changed"] == ["timeout_ms"]
    assert report["revision"] == 2
    history = stack.history()
    assert len(history) == 2
    assert history[-1].reason == "configure: timeout 300 ms"
    assert history[-1].created_by == "alice"
    assert history[-1].config.to_dict() == {**before.to_dict(), "timeout_ms": 300}
    assert stack.audit()[-1]["action"] == "deployment.revise"
    assert stack.apply(spec(timeout_ms=300))["changed"] == []


def test_settings_left_out_go_back_to_their_defaults(stack: Stack) -> None:
    stack.apply(SPEC)

    report = stack.apply({"deployment": "d", "model": "m", "version": 1, "rollout": None})

    assert report["changed"] == ["timeout_ms", "failover", "fallback", "rollout"]
    config = stack.routing.current("d")
    assert (config.timeout_ms, config.failover, config.has_fallback) == (None, None, False)
    with stack.db.read() as conn:
        assert md.get_rollout_plan(conn, "d") is None
    assert stack.history()[-1].reason == "configure: no timeout, no failover, no fallback"


def test_a_null_fallback_is_a_value_only_when_written(stack: Stack) -> None:
    stack.apply(spec(fallback=None))
    assert stack.routing.current("d").has_fallback is False

    report = stack.apply(SPEC.replace("fallback: 0", "fallback: null"))

    assert report["changed"] == ["fallback"]
    config = stack.routing.current("d")
    assert (config.has_fallback, config.fallback) == (True, None)
    assert stack.history()[-1].reason == "configure: fallback null"


@pytest.mark.parametrize(
    ("words", "share"), [("log_payloads: none", 0.0), ("log_payloads: 0.25", 0.25)]
)
def test_log_payloads_take_words_or_a_share(stack: Stack, words: str, share: float) -> None:
    stack.apply(SPEC.replace("log_payloads: all", words))
    assert stack.routing.current("d").log_payloads == share


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"replicas": 2}, r"replicas: unknown key \(known: deployment, model"),
        ({"log_payloads": "some"}, r"log_payloads: must be all, none or a share"),
        ({"log_payloads": 1.5}, r"log_payloads: must be all, none or a share"),
        ({"failover": 1}, r"failover: version 1 is the champion"),
        ({"failover": 9}, r"failover: m:9 is not registered"),
        ({"model": "nope"}, r"model: no model named 'nope'"),
        ({"version": 9}, r"version: m:9 is not registered"),
        ({"timeout_ms": 0}, r"timeout_ms: must be greater than or equal to 1"),
        ({"rollout": {"warmup": {"min_request": 1}}}, r"rollout.warmup.min_request: unknown"),
        ({"deployment": None}, r"deployment: required"),
    ],
)
def test_an_invalid_spec_is_refused_naming_the_field_and_nothing_is_written(
    stack: Stack, change: dict[str, Any], match: str
) -> None:
    audit = stack.audit()

    with pytest.raises(BadRequest, match=match):
        stack.apply(spec(**change))

    with stack.db.read() as conn:
        assert md.list_deployments(conn) == []
    assert stack.audit() == audit


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"failover": 1}, r"failover: version 1 is the champion"),
        ({"model": "other"}, r"model: 'd' serves model 'm'"),
        ({"version": 2, "rollout": None}, r"turnout rollout start d --version 2"),
        ({"log_payloads": -1}, r"log_payloads: must be all, none or a share"),
    ],
)
def test_an_invalid_change_to_a_deployment_writes_nothing(
    stack: Stack, change: dict[str, Any], match: str
) -> None:
    stack.apply(SPEC)
    audit = stack.audit()

    with pytest.raises(BadRequest, match=match):
        stack.apply({**spec(failover=3), **change})

    assert len(stack.history()) == 1
    assert stack.audit() == audit


def test_invalid_yaml_is_refused_with_its_line() -> None:
    with pytest.raises(BadRequest, match=r"not valid YAML: line 3, column 1"):
        parse_spec("deployment: d\nmodel: [m\n")
    with pytest.raises(BadRequest, match=r"must be a mapping"):
        parse_spec("- d")


def test_a_new_version_with_a_plan_starts_one_rollout(stack: Stack) -> None:
    stack.apply(SPEC)

    first = stack.apply(spec(version=3))
    second = stack.apply(spec(version=3))

    assert first["changed"] == ["version"]
    assert first["rollout"] is not None
    assert second["changed"] == []
    assert second["rollout"] == first["rollout"]
    with stack.db.read() as conn:
        running = rs.active_rollout(conn, "d")
    assert running is not None
    assert (running.id, running.version) == (first["rollout"], 3)
    assert running.plan["warmup"]["min_requests"] == 20
    assert len(stack.history()) == 1
    assert [a["action"] for a in stack.audit()].count("rollout.start") == 1


def test_a_rollout_started_without_a_plan_follows_the_deployment_plan(stack: Stack) -> None:
    stack.apply(SPEC)

    view = stack.rollouts.start("d", 2, None, actor="alice")

    assert view.to_dict()["steps"] == ["warmup", "promote", "bake"]
    assert view.rollout.plan["bake"]["duration_s"] == 1


def test_a_deployment_without_a_plan_rolls_out_with_the_default_one(stack: Stack) -> None:
    stack.apply(spec(rollout=None))

    view = stack.rollouts.start("d", 2, None, actor="alice")

    assert view.to_dict()["steps"][:2] == ["warmup", "challenge:10"]
