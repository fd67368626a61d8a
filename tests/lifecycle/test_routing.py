"""Traffic routing against a live server: shares, sticky keys, shadows, promote, rollback.

Every model here is a python-flavor model answering a constant (its version number), so
the body, the `x-turnout-model-version` header and the role can be checked against
each other.
"""

from __future__ import annotations

import inspect
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from tests.fixtures.routing_models import (
    ROW,
    constant_model,
    gateway_failing_model,
    raising_model,
    slow_loading_model,
    slow_model,
    warm_up_failing_model,
)
from tests.fixtures.server import LiveServer
from turnout.client import ApiError, Client
from turnout.gateway.router import BUCKETS, bucket_of
from turnout.gateway.shadow import ShadowMirror
from turnout.lifecycle.routing import Routing
from turnout.registry.service import Registry
from turnout.store.db import Database
from turnout.store.records import WorkerRecord

pytestmark = pytest.mark.server

REPORT_WAIT_S = 4.0
"""Workers report their counters every second; allow a few reports."""
DRAIN_WAIT_S = 60.0
"""A shadow's backlog of copies drains in a few seconds, longer on a loaded machine."""
MIRROR_QUEUE = inspect.signature(ShadowMirror).parameters["queue_size"].default
"""Copies the shadow mirror holds before it drops them."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path_factory.mktemp("routing") / "home").start()
    yield live
    live.stop()


@pytest.fixture(scope="module")
def client(server: LiveServer) -> Iterator[Client]:
    with server.client() as sdk:
        yield sdk


@pytest.fixture(scope="module")
def http(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as session:
        yield session


@pytest.fixture
def register(client: Client, tmp_path: Path) -> Callable[..., int]:
    return registrar(client, tmp_path)


def registrar(client: Client, tmp_path: Path) -> Callable[..., int]:
    """Registers a model version from a writer of `model.py`; returns the version number."""

    def register(model: str, write: Callable[[Path], Path]) -> int:
        folder = tmp_path / f"{model}-{len(list(tmp_path.iterdir()))}"
        record = client.register(model, write(folder), flavor="python")
        return int(record["version"])

    return register


def constants(register: Callable[..., int], model: str, count: int) -> None:
    """Versions 1..count of `model`, version v answering v."""
    for value in range(1, count + 1):
        version = register(model, lambda f, v=value: constant_model(f, v, tag=f"{model} {v}"))
        assert version == value


def predict(http: httpx.Client, deployment: str, **extra: Any) -> httpx.Response:
    headers = extra.pop("headers", None)
    response = http.post(
        f"/v1/deployments/{deployment}/predict",
        json={"instances": [ROW], **extra},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    return response


def answered_by(response: httpx.Response) -> int:
    """The version that answered, checked three ways."""
    version = int(response.headers["x-turnout-model-version"])
    body = response.json()
    assert body["model_version"] == version
    assert body["predictions"] == [float(version)]
    return version


def revision_of(client: Client, deployment: str) -> int:
    return int(client.show_deployment(deployment)["revision"])


def traffic_row(
    client: Client,
    deployment: str,
    version: int,
    role: str,
    done: Callable[[dict[str, Any]], bool],
    *,
    wait_s: float = REPORT_WAIT_S,
) -> dict[str, Any]:
    """The merged counters of one version and role, once `done` holds for them."""
    deadline = time.monotonic() + wait_s
    row: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        rows = client.show_deployment(deployment)["traffic"]
        row = next((r for r in rows if r["version"] == version and r["role"] == role), None)
        if row is not None and done(row):
            return row
        time.sleep(0.2)
    pytest.fail(f"no {role} row for version {version} satisfying the check; last: {row}")


# -- traffic shares and sticky keys ---------------------------------------------------------


def test_a_challenger_gets_its_share_of_real_requests(
    client: Client, http: httpx.Client, register: Callable[..., int]
) -> None:
    constants(register, "split", 2)
    client.create_deployment("split-prod", model="split", version=1)
    applied = client.route("split-prod", challengers={2: 20})
    assert applied["revision"] == 2
    assert applied["acknowledged"] is True
    requests = 2_000
    seen: Counter[tuple[int, str]] = Counter()
    for _ in range(requests):
        response = predict(http, "split-prod")
        assert response.headers["x-turnout-revision"] == "2"
        seen[answered_by(response), response.headers["x-turnout-role"]] += 1
    assert set(seen) == {(1, "champion"), (2, "challenger")}
    assert seen[2, "challenger"] / requests == pytest.approx(0.20, abs=0.03)
    champion = traffic_row(
        client, "split-prod", 1, "champion", lambda r: r["requests"] == seen[1, "champion"]
    )
    assert champion["errors"] == 0
    challenger = traffic_row(
        client, "split-prod", 2, "challenger", lambda r: r["requests"] == seen[2, "challenger"]
    )
    assert challenger["errors"] == 0
    assert challenger["latency_p50_ms"] is not None


def test_a_sticky_header_keeps_each_customer_on_one_version(
    client: Client, http: httpx.Client, register: Callable[..., int]
) -> None:
    constants(register, "sticky", 2)
    client.create_deployment("sticky-prod", model="sticky", version=1)
    applied = client.route("sticky-prod", challengers={2: 50}, sticky_key="header:X-Customer-Id")
    assert applied["config"]["sticky_key"] == "header:x-customer-id"
    versions: dict[str, set[int]] = {}
    for _ in range(4):
        for n in range(50):
            customer = f"customer-{n}"
            response = predict(http, "sticky-prod", headers={"X-Customer-Id": customer})
            versions.setdefault(customer, set()).add(answered_by(response))
    assert all(len(seen) == 1 for seen in versions.values()), versions
    assert {v for seen in versions.values() for v in seen} == {1, 2}
    for customer, (version,) in versions.items():
        assert version == (2 if bucket_of(customer) < BUCKETS // 2 else 1)


def test_a_sticky_field_keeps_each_customer_on_one_version(
    client: Client, http: httpx.Client, register: Callable[..., int]
) -> None:
    constants(register, "field", 2)
    client.create_deployment("field-prod", model="field", version=1)
    client.route("field-prod", challengers={2: 50})
    applied = client.route("field-prod", sticky_key="field:customer_id")
    assert applied["config"]["challengers"] == {"2": 50.0}
    versions: dict[str, set[int]] = {}
    for _ in range(4):
        for n in range(50):
            response = predict(http, "field-prod", customer_id=f"c{n}")
            versions.setdefault(f"c{n}", set()).add(answered_by(response))
    assert all(len(seen) == 1 for seen in versions.values()), versions
    assert {v for seen in versions.values() for v in seen} == {1, 2}


# -- shadows --------------------------------------------------------------------------------


def test_a_shadow_gets_copies_but_never_answers(
    client: Client, http: httpx.Client, register: Callable[..., int]
) -> None:
    constants(register, "mirror", 2)
    register("mirror", lambda f: constant_model(f, 1.0, tag="mirror 3 agrees with 1"))
    client.create_deployment("mirror-prod", model="mirror", version=1)
    applied = client.route("mirror-prod", shadows={3: 100})
    assert applied["acknowledged"] is True
    for _ in range(40):
        response = predict(http, "mirror-prod")
        assert response.headers["x-turnout-model-version"] == "1"
        assert response.headers["x-turnout-role"] == "champion"
        assert response.json()["model_version"] == 1
    shadow = traffic_row(client, "mirror-prod", 3, "shadow", lambda r: r["requests"] >= 40)
    assert shadow["requests"] == 40
    assert shadow["errors"] == 0
    assert shadow["compared"] == 40
    assert shadow["agreement_rate"] == 1.0
    assert shadow["latency_p50_ms"] is not None
    roles = {(r["version"], r["role"]) for r in client.show_deployment("mirror-prod")["traffic"]}
    assert roles == {(1, "champion"), (3, "shadow")}


def test_a_disagreeing_shadow_has_a_low_agreement_rate(
    client: Client, http: httpx.Client, register: Callable[..., int]
) -> None:
    constants(register, "differ", 2)
    client.create_deployment("differ-prod", model="differ", version=1)
    client.route("differ-prod", shadows={2: 100})
    for _ in range(10):
        assert answered_by(predict(http, "differ-prod")) == 1
    shadow = traffic_row(client, "differ-prod", 2, "shadow", lambda r: r["compared"] >= 10)
    assert shadow["agreement_rate"] == 0.0


def test_a_failing_shadow_never_fails_callers(
    client: Client, http: httpx.Client, register: Callable[..., int]
) -> None:
    constants(register, "flaky", 1)
    register("flaky", raising_model)
    client.create_deployment("flaky-prod", model="flaky", version=1)
    client.route("flaky-prod", shadows={2: 100})
    for _ in range(20):
        response = predict(http, "flaky-prod")
        assert answered_by(response) == 1
        assert response.headers["x-turnout-role"] == "champion"
    shadow = traffic_row(client, "flaky-prod", 2, "shadow", lambda r: r["requests"] >= 20)
    assert shadow["errors"] == shadow["requests"] == 20
    assert shadow["error_rate"] == 1.0
    assert shadow["compared"] == 0
    champion = traffic_row(client, "flaky-prod", 1, "champion", lambda r: r["requests"] >= 20)
    assert champion["errors"] == 0


def test_a_slow_shadow_never_holds_callers_and_every_copy_is_accounted_for(
    client: Client, http: httpx.Client, register: Callable[..., int], tmp_path: Path
) -> None:
    """A 1 s shadow behind a stream of requests: every caller is answered by the champion
    while the shadow lags, and every copy ends up either shadowed (answered, failed or timed
    out) or counted as dropped. Whether the mirror's queue overflows depends on the machine's
    speed: that is tested in tests/gateway/test_shadow.py, and how fast answers stay is
    measured in bench/shadow_impact.py."""
    gate = tmp_path / "slow"
    gate.touch()
    constants(register, "slow", 1)
    register("slow", lambda f: slow_model(f, 1.0, gate=gate))
    client.create_deployment("slow-prod", model="slow", version=1)
    client.route("slow-prod", shadows={2: 100})
    copies = MIRROR_QUEUE + 100
    try:
        for _ in range(copies):
            response = predict(http, "slow-prod")
            assert answered_by(response) == 1
            assert response.headers["x-turnout-role"] == "champion"
    finally:
        gate.unlink()  # the backlog drains at once
    # shadowed copies count in `requests`, timeouts and errors included
    shadow = traffic_row(
        client, "slow-prod", 2, "shadow", lambda r: r["requests"] + r["dropped"] >= copies,
        wait_s=DRAIN_WAIT_S,
    )  # fmt: skip
    assert shadow["requests"] + shadow["dropped"] == copies
    client.route("slow-prod", clear=True)


# -- promote and rollback -------------------------------------------------------------------


def test_promote_and_rollback_append_revisions(
    client: Client, http: httpx.Client, register: Callable[..., int]
) -> None:
    constants(register, "blue", 2)
    client.create_deployment("blue-prod", model="blue", version=1)
    client.route("blue-prod", challengers={2: 10})

    promoted = client.promote("blue-prod", version=2)
    assert promoted["revision"] == 3
    assert promoted["acknowledged"] is True
    assert promoted["workers"]
    assert all(w["revision"] == 3 for w in promoted["workers"])
    for _ in range(30):
        response = predict(http, "blue-prod")
        assert answered_by(response) == 2
        assert response.headers["x-turnout-role"] == "champion"
        assert response.headers["x-turnout-revision"] == "3"
    shown = client.show_deployment("blue-prod")
    assert shown["champion"] == 2
    assert shown["config"]["standby"] == 1
    assert shown["challengers"] == {}
    assert [w["revision"] for w in shown["workers"]] == [3] * len(shown["workers"])
    before_rollbacks = client.history("blue-prod")

    back = client.rollback("blue-prod")
    assert back["revision"] == 4
    assert back["acknowledged"] is True
    assert back["config"] == before_rollbacks[1]["config"]
    response = predict(http, "blue-prod")
    assert response.headers["x-turnout-revision"] == "4"
    first = client.rollback("blue-prod", to_revision=1)
    assert first["revision"] == 5
    assert first["config"] == before_rollbacks[0]["config"]
    for _ in range(10):
        response = predict(http, "blue-prod")
        assert answered_by(response) == 1
        assert response.headers["x-turnout-role"] == "champion"

    history = client.history("blue-prod")
    assert [r["revision"] for r in history] == [1, 2, 3, 4, 5]
    assert [r["reason"] for r in history] == [
        "create with blue:1",
        "route: challengers 2 at 10%",
        "promote 2 (champion was 1, kept as standby)",
        "rollback to revision 2",
        "rollback to revision 1",
    ]
    assert history[:3] == before_rollbacks
    assert history[3]["config"] == history[1]["config"]
    assert history[4]["config"] == history[0]["config"]
    assert all(r["created_by"] == "admin" for r in history)


def test_rollback_keeps_the_champion_it_leaves_as_standby(
    client: Client, register: Callable[..., int]
) -> None:
    constants(register, "undo", 2)
    client.create_deployment("undo-prod", model="undo", version=1)
    client.promote("undo-prod", version=2)
    back = client.rollback("undo-prod")
    assert back["config"]["champion"] == 1
    assert back["config"]["standby"] == 2
    again = client.promote("undo-prod", version=2)
    assert again["config"]["champion"] == 2
    assert again["config"]["standby"] == 1


# -- refused changes ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def guarded(server: LiveServer, client: Client, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Deployment `guard-prod` at revision 1: versions 1-3 healthy, 4 corrupted on disk,
    5 unable to warm up."""
    folder = tmp_path_factory.mktemp("guard")
    for value in (1, 2, 3):
        path = constant_model(folder / str(value), value, tag=f"guard {value}")
        client.register("guard", path, flavor="python")
    corrupt = client.register(
        "guard", constant_model(folder / "4", 4, tag="guard 4, corrupted"), flavor="python"
    )
    client.register("guard", warm_up_failing_model(folder / "5"), flavor="python")
    client.create_deployment("guard-prod", model="guard", version=1)
    sha = corrupt["files"][0]["sha256"]
    blob = server.home / "artifacts" / "sha256" / sha[:2] / sha
    os.chmod(blob, 0o644)
    blob.write_bytes(blob.read_bytes()[:-10] + b"0123456789")
    return "guard-prod"


def _route(**change: Any) -> Callable[[Client, str], Any]:
    return lambda client, name: client.route(name, **change)


def _promote(version: int) -> Callable[[Client, str], Any]:
    return lambda client, name: client.promote(name, version=version)


def _rollback(to_revision: int | None) -> Callable[[Client, str], Any]:
    return lambda client, name: client.rollback(name, to_revision=to_revision)


CHALLENGER_SHARE = "challenger share for version 2: must be between 0 and 100, not"
SHADOW_SHARE = "shadow share for version 2: must be more than 0 and at most 100, not"
REFUSED = {
    "shares sum to 100": (_route(challengers={2: 60, 3: 40}), 400, "sum to 100%"),
    "shares sum past 100": (_route(challengers={2: 70, 3: 45}), 400, "sum to 115%"),
    "zero share": (_route(challengers={2: 0}), 400, CHALLENGER_SHARE),
    "negative share": (_route(challengers={2: -5}), 400, CHALLENGER_SHARE),
    "whole share": (_route(challengers={2: 100}), 400, CHALLENGER_SHARE),
    "share finer than a bucket": (_route(challengers={2: 0.004}), 400, "steps of 0.01%"),
    "shares that round to everything": (
        _route(challengers={2: 50, 3: 49.996}),
        400,
        "steps of 0.01%",
    ),
    "shadow share finer than a bucket": (_route(shadows={2: 12.345}), 400, "steps of 0.01%"),
    "zero shadow share": (_route(shadows={2: 0}), 400, SHADOW_SHARE),
    "shadow share past 100": (_route(shadows={2: 150}), 400, SHADOW_SHARE),
    "unknown challenger": (_route(challengers={9: 10}), 404, "9"),
    "unknown shadow": (_route(shadows={9: 100}), 404, "9"),
    "unknown promote": (_promote(9), 404, "9"),
    "corrupted challenger": (_route(challengers={4: 10}), 422, "corrupted"),
    "corrupted shadow": (_route(shadows={4: 100}), 422, "corrupted"),
    "corrupted promote": (_promote(4), 422, "corrupted"),
    "challenger fails warm-up": (_route(challengers={5: 10}), 422, "guard:5.*MemoryError"),
    "promote fails warm-up": (_promote(5), 422, "guard:5.*MemoryError"),
    "promote the champion": (_promote(1), 409, "already the champion"),
    "roll back the first revision": (_rollback(None), 409, "first revision"),
    "roll back the first revision to itself": (_rollback(1), 409, "first revision"),
    "roll back the first revision to a later one": (_rollback(7), 409, "first revision"),
    "roll back to revision 0": (_rollback(0), 422, "to_revision"),
    "champion as challenger": (_route(challengers={1: 10}), 400, "is the champion"),
    "champion as shadow": (_route(shadows={1: 100}), 400, "is the champion"),
    "challenger and shadow": (
        _route(challengers={2: 10}, shadows={2: 100}),
        400,
        "both challenger and shadow",
    ),
    "sticky key without source": (_route(sticky_key="customer"), 400, "header:NAME or field:NAME"),
    "sticky key unknown source": (_route(sticky_key="cookie:id"), 400, "header:NAME"),
    "sticky key without name": (_route(sticky_key="header:"), 400, "header:NAME"),
    "nothing to change": (_route(), 400, "nothing to change"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_a_refused_change_leaves_the_active_revision_alone(
    client: Client, http: httpx.Client, guarded: str, case: str
) -> None:
    change, status, message = REFUSED[case]
    before = client.show_deployment(guarded)
    with pytest.raises(ApiError, match=message) as err:
        change(client, guarded)
    assert err.value.status == status
    after = client.show_deployment(guarded)
    assert after["revision"] == before["revision"] == 1
    assert after["config"] == before["config"]
    assert [r["revision"] for r in client.history(guarded)] == [1]
    assert answered_by(predict(http, guarded)) == 1


def test_shares_in_hundredths_of_a_percent_are_accepted(
    client: Client, register: Callable[..., int]
) -> None:
    constants(register, "fine", 4)
    client.create_deployment("fine-prod", model="fine", version=1)
    applied = client.route("fine-prod", challengers={2: 33.33, 3: 0.01}, shadows={4: 0.5})
    assert applied["acknowledged"] is True
    assert applied["config"]["challengers"] == {"2": 33.33, "3": 0.01}
    assert applied["config"]["shadows"] == {"4": 0.5}
    assert applied["reason"] == "route: challengers 2 at 33.33%, 3 at 0.01%; shadows 4 (0.5%)"


def test_rollback_targets_only_earlier_revisions(
    client: Client, http: httpx.Client, register: Callable[..., int]
) -> None:
    constants(register, "back", 3)
    client.create_deployment("back-prod", model="back", version=1)
    client.promote("back-prod", version=2)
    client.promote("back-prod", version=3)
    for target in (3, 4, 99):
        with pytest.raises(ApiError, match=f"revision {target}: choose one of 1..2") as err:
            client.rollback("back-prod", to_revision=target)
        assert err.value.status == 400
    assert [r["revision"] for r in client.history("back-prod")] == [1, 2, 3]
    assert answered_by(predict(http, "back-prod")) == 3


@pytest.mark.parametrize(
    "body",
    [
        {"challengers": {"two": 10}},
        {"challengers": {"2": "lots"}},
        {"challengers": {"2": 10}, "weights": {"2": 10}},
        {"sticky_key": 5},
    ],
)
def test_malformed_route_bodies_are_422(
    server: LiveServer, client: Client, guarded: str, body: dict[str, Any]
) -> None:
    response = httpx.post(
        f"{server.url}/api/v1/deployments/{guarded}/route",
        json=body,
        headers={"authorization": f"Bearer {server.token}"},
    )
    assert response.status_code == 422, response.text
    assert "error" in response.json()
    assert revision_of(client, guarded) == 1


def test_changes_to_an_unknown_deployment_are_404(client: Client) -> None:
    for change in (_route(challengers={2: 10}), _promote(2), _rollback(None)):
        with pytest.raises(ApiError, match="nowhere") as err:
            change(client, "nowhere")
        assert err.value.status == 404


def test_rolling_back_a_change_the_gateway_could_not_serve(tmp_path: Path) -> None:
    """Version 2 passes the control plane's check but the gateway cannot load it: the
    change is not acknowledged, callers keep revision 1, and the rollback that undoes it
    is acknowledged although workers still report the old failure when it starts.

    Thread runners: with runner processes the check's process is the one that serves, so
    the control plane and the gateway cannot disagree this way."""
    live = LiveServer(tmp_path / "home", env={"TURNOUT_RUNNER": "thread"}).start()
    try:
        with live.client() as client, httpx.Client(base_url=live.url) as http:
            register = registrar(client, tmp_path)
            constants(register, "fragile", 1)
            register("fragile", lambda f: gateway_failing_model(f, tmp_path / "loads"))
            client.create_deployment("fragile-prod", model="fragile", version=1)
            assert predict(http, "fragile-prod").headers["x-turnout-revision"] == "1"

            routed = client.route("fragile-prod", challengers={2: 50})
            assert routed["revision"] == 2
            assert routed["acknowledged"] is False
            assert "revision 2 not served" in routed["workers"][0]["error"]
            assert "the feature store went away" in routed["workers"][0]["error"]
            for _ in range(20):
                response = predict(http, "fragile-prod")
                assert answered_by(response) == 1
                assert response.headers["x-turnout-revision"] == "1"

            back = client.rollback("fragile-prod")
            assert back["revision"] == 3
            assert back["acknowledged"] is True
            assert [(w["revision"], w["error"]) for w in back["workers"]] == [(3, None)]
            assert predict(http, "fragile-prod").headers["x-turnout-revision"] == "3"
    finally:
        live.stop()


def test_concurrent_changes_never_silently_undo_each_other(
    client: Client, server: LiveServer, register: Callable[..., int]
) -> None:
    """A change computed from revision N may only become N+1: one checked while another
    was written is refused with 409, never written on top of the stale base."""
    constants(register, "race", 2)
    register("race", lambda f: slow_loading_model(f, 3, 0.6, tag="race 3"))
    client.create_deployment("race-prod", model="race", version=1)
    outcomes: dict[str, Any] = {}

    def shadow() -> None:
        with server.client() as other:
            try:
                outcomes["shadow"] = other.route("race-prod", shadows={3: 100})
            except ApiError as exc:
                outcomes["shadow"] = exc

    slow = threading.Thread(target=shadow)
    slow.start()
    time.sleep(0.2)  # the shadow's check (a 0.6 s load) is under way
    outcomes["challenger"] = client.route("race-prod", challengers={2: 10})
    slow.join()

    assert outcomes["challenger"]["revision"] == 2
    final = client.show_deployment("race-prod")["config"]
    if isinstance(outcomes["shadow"], ApiError):
        assert outcomes["shadow"].status == 409
        assert "moved from revision 1 to 2" in str(outcomes["shadow"])
        assert [r["revision"] for r in client.history("race-prod")] == [1, 2]
        assert final["challengers"] == {"2": 10.0}
        assert final["shadows"] == {}
    else:
        assert final["challengers"] == {"2": 10.0}
        assert final["shadows"] == {"3": 100.0}


class ScriptedWorkers(Routing):
    """Routing whose live workers report from a script, one report per poll."""

    def __init__(self, *reports: WorkerRecord) -> None:
        super().__init__(cast(Database, None), cast(Registry, None), ack_timeout_s=1.0)
        self.reports = list(reports)

    def live_workers(self, *, light: bool = False) -> list[WorkerRecord]:
        return [self.reports.pop(0) if len(self.reports) > 1 else self.reports[0]]


def worker(revision: int, failed: int | None = None) -> WorkerRecord:
    """A worker serving `revision` that reports it could not serve revision `failed`."""
    now = datetime.now(UTC)
    message = f"revision {failed} not served: d:{failed}: failed to load"
    errors = {"d": {"revision": failed, "message": message}} if failed else {}
    return WorkerRecord(
        id="w",
        host="host",
        pid=1,
        started_at=now,
        heartbeat_at=now,
        revisions={"d": revision},
        stats=[],
        errors=errors,
    )


def test_a_worker_serving_a_revision_it_reports_failing_has_not_acknowledged_it() -> None:
    """A worker that had no earlier route keeps the failing one; its error still counts."""
    failing = worker(2, failed=2)
    acknowledged, _ = ScriptedWorkers(failing).wait_for_workers("d", 2)
    assert acknowledged is False


def test_a_stale_failure_does_not_refuse_the_next_revision() -> None:
    stale = worker(1, failed=2)
    acknowledged, workers = ScriptedWorkers(stale, stale, worker(3)).wait_for_workers("d", 3)
    assert acknowledged is True
    assert workers[0].revisions == {"d": 3}


def test_a_failure_about_the_new_revision_refuses_it_at_once() -> None:
    started = time.monotonic()
    failing = worker(1, failed=3)
    acknowledged, _ = ScriptedWorkers(failing).wait_for_workers("d", 3)
    assert acknowledged is False
    assert time.monotonic() - started < 0.5


# -- several workers ------------------------------------------------------------------------


def test_every_worker_acknowledges_a_promote(tmp_path: Path) -> None:
    live = LiveServer(tmp_path / "home", workers=2).start()
    try:
        with live.client() as client, httpx.Client(base_url=live.url) as http:
            for value in (1, 2):
                client.register(
                    "duo", constant_model(tmp_path / str(value), value), flavor="python"
                )
            client.create_deployment("duo-prod", model="duo", version=1)
            deadline = time.monotonic() + 10
            while len(client.show_deployment("duo-prod")["workers"]) < 2:
                assert time.monotonic() < deadline, "the second worker never reported"
                time.sleep(0.1)
            promoted = client.promote("duo-prod", version=2)
            assert promoted["acknowledged"] is True
            assert len(promoted["workers"]) == 2
            assert len({w["pid"] for w in promoted["workers"]}) == 2
            assert all(w["revision"] == 2 for w in promoted["workers"])
            for _ in range(40):
                response = http.post(
                    "/v1/deployments/duo-prod/predict",
                    json={"instances": [ROW]},
                    headers={"connection": "close"},
                )
                assert answered_by(response) == 2
                assert response.headers["x-turnout-revision"] == "2"
            shown = client.show_deployment("duo-prod")
            assert [w["revision"] for w in shown["workers"]] == [2, 2]
            champion = traffic_row(client, "duo-prod", 2, "champion", lambda r: r["requests"] >= 40)
            assert champion["requests"] == 40
    finally:
        live.stop()
