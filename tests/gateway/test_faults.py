"""Faulty models against a live server: every request still gets an answer by its deadline.

Each fault model is version 1 (the champion) of its own model, with a healthy constant
version 2 as failover and a fallback value; live requests carry `FAULTY_ROW`, which sets
the fault off, and latencies are measured by the client over one kept-alive connection.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.fixtures.fault_models import (
    BENIGN_ROW,
    FAULTY_ROW,
    HEALTHY_VALUE,
    Fault,
    constant_model,
    faulty_model,
)
from tests.fixtures.server import LiveServer
from turnout.client import Client

pytestmark = pytest.mark.server

DEADLINE_MS = 100
SLACK_MS = 10
"""What the client may see on top of the deadline: HTTP on loopback, encoding."""
REQUESTS = 100
FAILOVER_VALUE = 2.0
FALLBACK_VALUE = -1
BREAKER_MIN_CALLS = 20
BREAKER_OPEN_S = 5.0
REPORT_WAIT_S = 4.0
"""Workers report their counters every second; allow a few reports."""
RECOVERY_S = 30.0
"""Breaker cool-down, runner backoff and restart, with room to spare."""
ROLES = {"champion", "failover", "fallback"}


@dataclass(frozen=True)
class Reply:
    status: int
    role: str | None
    version: int | None
    body: dict[str, Any]
    latency_ms: float


@dataclass
class Bench:
    """One live server with an SDK client, a kept-alive HTTP session and a healthy deployment."""

    server: LiveServer
    client: Client
    http: httpx.Client
    folder: Path
    release: Path
    """Ends every `Fault.HANGS` sleep when it exists, so the server can stop promptly."""
    p99s: dict[str, float] = field(default_factory=dict)

    def register(self, model: str, write: Callable[[Path], Path]) -> int:
        target = self.folder / f"{model}-{len(list(self.folder.iterdir()))}"
        return int(self.client.register(model, write(target), flavor="python")["version"])

    def deploy(
        self,
        name: str,
        fault: Fault,
        *,
        failover: bool = True,
        fallback: Any = FALLBACK_VALUE,
        switch: Path | None = None,
    ) -> str:
        """`name` serving `fault` as champion (version 1), once it answers benign rows."""
        write = lambda f: faulty_model(f, fault, release=self.release, switch=switch, tag=name)  # noqa: E731
        assert self.register(name, write) == 1
        if failover:
            assert self.register(name, lambda f: constant_model(f, FAILOVER_VALUE, tag=name)) == 2
        extra: dict[str, Any] = {} if fallback is None else {"fallback": fallback}
        self.client.create_deployment(
            name,
            model=name,
            version=1,
            timeout_ms=DEADLINE_MS,
            failover=2 if failover else None,
            **extra,
        )
        self.until_champion(name, timeout_s=60)
        return name

    def predict(self, deployment: str, row: list[float]) -> Reply:
        started = time.perf_counter()
        response = self.http.post(f"/v1/deployments/{deployment}/predict", json={"instances": [row]})
        latency_ms = (time.perf_counter() - started) * 1000
        version = response.headers.get("x-turnout-model-version")
        return Reply(
            response.status_code,
            response.headers.get("x-turnout-role"),
            int(version) if version is not None else None,
            response.json(),
            latency_ms,
        )

    def until_champion(self, deployment: str, *, timeout_s: float = RECOVERY_S) -> float:
        """Seconds until a benign row is answered by the champion again."""
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            reply = self.predict(deployment, BENIGN_ROW)
            if reply.status == 200 and reply.role == "champion":
                assert reply.body["predictions"] == [HEALTHY_VALUE]
                return time.monotonic() - started
            time.sleep(0.05)
        pytest.fail(f"{deployment}: the champion did not answer within {timeout_s}s")

    def traffic(self, deployment: str, role: str, done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """The merged counters of version 1 in `role`, once `done` holds for them."""
        deadline = time.monotonic() + REPORT_WAIT_S
        row: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            rows = self.client.show_deployment(deployment)["traffic"]
            row = next((r for r in rows if r["version"] == 1 and r["role"] == role), None)
            if row is not None and done(row):
                return row
            time.sleep(0.2)
        pytest.fail(f"{deployment}: no {role} counters satisfying the check; last: {row}")

    def still_serving(self) -> None:
        """The gateway is live and a healthy deployment on it answers at once."""
        assert self.http.get("/v2/health/live").status_code == 200
        reply = self.predict("healthy", FAULTY_ROW)
        assert (reply.status, reply.role, reply.body["predictions"]) == (200, "champion", [1.0])


def bench(tmp: Path, env: dict[str, str]) -> Iterator[Bench]:
    server = LiveServer(tmp / "home", env=env).start()
    release = tmp / "release"
    folder = tmp / "models"
    folder.mkdir()
    try:
        with server.client() as client, httpx.Client(base_url=server.url, timeout=30) as http:
            live = Bench(server, client, http, folder, release)
            assert live.register("healthy", lambda f: constant_model(f, 1.0, tag="healthy")) == 1
            client.create_deployment("healthy", model="healthy", version=1, timeout_ms=DEADLINE_MS)
            yield live
            for name, p99 in live.p99s.items():
                print(f"p99 {name}: {p99:.1f} ms")
    finally:
        release.touch()
        server.stop()


@pytest.fixture(scope="module")
def process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    yield from bench(tmp_path_factory.mktemp("process"), {})


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    """Runner processes may grow only 200 MB past their loaded size."""
    yield from bench(tmp_path_factory.mktemp("capped"), {"TURNOUT_RUNNER_MEMORY_MB": "200"})


@pytest.fixture(scope="module")
def threads(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    yield from bench(tmp_path_factory.mktemp("threads"), {"TURNOUT_RUNNER": "thread"})


def hammer(live: Bench, deployment: str, n: int = REQUESTS) -> list[Reply]:
    return [live.predict(deployment, FAULTY_ROW) for _ in range(n)]


def p99(replies: list[Reply]) -> float:
    return float(np.percentile([r.latency_ms for r in replies], 99))


def check_answered_in_time(
    live: Bench, deployment: str, replies: list[Reply], *, roles: set[str]
) -> None:
    """Every reply is a 200 from one of `roles` carrying that role's value, within the
    deadline (p99, as the client measures it)."""
    assert [r.status for r in replies] == [200] * len(replies), replies[0].body
    seen = Counter(r.role for r in replies)
    assert set(seen) <= roles, seen
    for reply in replies:
        expected = {
            "champion": (1, [HEALTHY_VALUE]),
            "failover": (2, [FAILOVER_VALUE]),
            "fallback": (1, [FALLBACK_VALUE]),
        }[str(reply.role)]
        assert (reply.version, reply.body["predictions"]) == expected, reply
    measured = p99(replies)
    live.p99s[deployment] = measured
    assert measured <= DEADLINE_MS + SLACK_MS, f"p99 {measured:.1f} ms; roles {seen}"


# -- each fault in isolated runner processes ---------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [Fault.RAISES, Fault.SLOW, Fault.WRONG_ROWS, Fault.DICTS, Fault.OBJECTS],
)
def test_a_failing_champion_is_answered_for_by_failover_or_fallback(
    process: Bench, fault: Fault
) -> None:
    deployment = process.deploy(f"p-{fault}", fault)
    replies = hammer(process, deployment)
    check_answered_in_time(process, deployment, replies, roles={"failover", "fallback"})
    process.still_serving()


def test_a_hung_runner_is_killed_and_replaced(process: Bench) -> None:
    deployment = process.deploy("p-hangs", Fault.HANGS)
    replies = hammer(process, deployment)
    check_answered_in_time(process, deployment, replies, roles={"failover", "fallback"})
    process.still_serving()
    process.until_champion(deployment)  # the release file does not exist: it was killed


def test_a_runner_that_exits_is_restarted(process: Bench) -> None:
    deployment = process.deploy("p-exits", Fault.EXITS)
    crash = process.predict(deployment, FAULTY_ROW)
    assert (crash.status, crash.role) == (200, "failover")
    restart_s = process.until_champion(deployment)
    print(f"restart after os._exit: {restart_s * 1000:.0f} ms")
    replies = hammer(process, deployment)
    check_answered_in_time(process, deployment, replies, roles={"failover", "fallback"})
    process.still_serving()
    process.until_champion(deployment)


def test_a_runner_out_of_memory_is_restarted(capped: Bench) -> None:
    """The leak answers properly until its runner hits the cap, so the champion answers
    some requests; the rest go down the chain while it restarts."""
    deployment = capped.deploy("p-leaks", Fault.LEAKS)
    replies = hammer(capped, deployment)
    check_answered_in_time(capped, deployment, replies, roles=ROLES)
    assert Counter(r.role for r in replies)["champion"] < len(replies)
    capped.still_serving()
    capped.until_champion(deployment)


# -- the end of the chain ----------------------------------------------------------------------


def test_without_failover_the_fallback_value_answers_as_is(process: Bench) -> None:
    deployment = process.deploy("p-label", Fault.RAISES, failover=False, fallback={"label": "unknown"})
    response = process.http.post(
        f"/v1/deployments/{deployment}/predict", json={"instances": [FAULTY_ROW, FAULTY_ROW]}
    )
    assert response.status_code == 200
    assert response.headers["x-turnout-role"] == "fallback"
    assert response.json()["predictions"] == [{"label": "unknown"}] * 2

    deployment = process.deploy("p-zero", Fault.RAISES, failover=False, fallback=0)
    request = {
        "inputs": [
            {"name": "input-0", "datatype": "FP64", "shape": [2, 30], "data": FAULTY_ROW * 2}
        ]
    }
    response = process.http.post(f"/v2/models/{deployment}/infer", json=request)
    assert response.status_code == 200
    assert response.headers["x-turnout-role"] == "fallback"
    body = response.json()
    assert body["parameters"]["role"] == "fallback"
    assert body["outputs"][0]["datatype"] == "INT64"
    assert body["outputs"][0]["data"] == [0, 0]


@pytest.mark.parametrize(
    ("fault", "says"), [(Fault.RAISES, "RuntimeError: the feature cache exploded"), (Fault.SLOW, "timed out")]
)
def test_without_failover_or_fallback_the_answer_is_a_503(
    process: Bench, fault: Fault, says: str
) -> None:
    deployment = process.deploy(f"p-bare-{fault}", fault, failover=False, fallback=None)
    replies = [process.predict(deployment, FAULTY_ROW) for _ in range(5)]
    for reply in replies:
        assert reply.status == 503
        assert says in reply.body["error"]
        assert "no fallback value" in reply.body["error"]
    assert max(r.latency_ms for r in replies) <= DEADLINE_MS + SLACK_MS


# -- the circuit breaker -----------------------------------------------------------------------


def test_the_breaker_skips_a_failing_champion_until_it_recovers(
    process: Bench, tmp_path: Path
) -> None:
    switch = tmp_path / "slow"
    switch.touch()
    deployment = process.deploy("p-breaker", Fault.SLOW, switch=switch)
    failing = hammer(process, deployment, BREAKER_MIN_CALLS)
    assert {r.role for r in failing} == {"fallback"}  # each waited out the deadline
    opened = time.monotonic()
    skipped = hammer(process, deployment, 30)
    assert {r.role for r in skipped} == {"failover"}
    latencies = sorted(r.latency_ms for r in skipped)
    assert latencies[len(latencies) // 2] < DEADLINE_MS / 4, latencies
    assert latencies[-1] < DEADLINE_MS, latencies
    process.traffic(deployment, "champion", lambda row: row["rejected"] >= 30)

    switch.unlink()
    time.sleep(max(0.0, opened + BREAKER_OPEN_S - time.monotonic()))
    recovered = process.predict(deployment, FAULTY_ROW)
    started = time.monotonic()
    while recovered.role != "champion" and time.monotonic() - started < RECOVERY_S:
        time.sleep(0.1)
        recovered = process.predict(deployment, FAULTY_ROW)
    assert (recovered.status, recovered.role) == (200, "champion")
    assert recovered.body["predictions"] == [HEALTHY_VALUE]
    after = hammer(process, deployment, 10)
    assert {r.role for r in after} == {"champion"}


# -- models in the gateway's own threads --------------------------------------------------------


def test_in_thread_mode_a_raising_champion_is_answered_for(threads: Bench) -> None:
    deployment = threads.deploy("t-raises", Fault.RAISES)
    replies = hammer(threads, deployment)
    check_answered_in_time(threads, deployment, replies, roles={"failover", "fallback"})
    threads.still_serving()
    threads.until_champion(deployment)


def test_in_thread_mode_a_hung_champion_is_answered_for(threads: Bench) -> None:
    """A thread cannot be killed: the champion stays stuck, but every request is answered."""
    deployment = threads.deploy("t-hangs", Fault.HANGS)
    replies = hammer(threads, deployment)
    check_answered_in_time(threads, deployment, replies, roles={"failover", "fallback"})
    threads.still_serving()
