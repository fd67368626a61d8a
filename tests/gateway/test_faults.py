"""Faulty models against a live server: every request still gets an answer by its deadline.

Every fault model is a version of the model `faulty` whose version 1 is a healthy
constant, the failover of each deployment; live requests carry `FAULTY_ROW`, which sets
the fault off, and latencies are measured by the client over one kept-alive connection.
At the end, the runner process and the batcher are checked on their own.
"""

from __future__ import annotations

import asyncio
import itertools
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
from turnout.gateway.batcher import Batcher
from turnout.registry.flavors import Prediction
from turnout.types import Array

DEADLINE_MS = 100
SLACK_MS = 10
"""What the client may see on top of the deadline: loopback HTTP and encoding."""
REQUESTS = 100
MODEL = "faulty"
FAILOVER = 1
"""The version of `MODEL` every deployment here fails over to."""
FAILOVER_VALUE = 2.0
FALLBACK_VALUE = -1
BREAKER_MIN_CALLS = 20
BREAKER_OPEN_S = 5.0
REPORT_WAIT_S = 4.0
"""Workers report their counters every second; allow a few reports."""
RECOVERY_S = 60.0
"""Breaker cool-down, runner backoff and restart, with room to spare on a busy machine."""


@dataclass(frozen=True)
class Reply:
    status: int
    role: str | None
    version: int | None
    body: dict[str, Any]
    latency_ms: float


@dataclass(frozen=True)
class Deployment:
    name: str
    champion: int


@dataclass
class Bench:
    """One live server with an SDK client, a kept-alive HTTP session, the failover version
    and a healthy deployment of its own."""

    server: LiveServer
    client: Client
    http: httpx.Client
    folder: Path
    release: Path
    """Ends every `Fault.HANGS` sleep once it exists, so the server can stop promptly."""
    measured: dict[str, float] = field(default_factory=dict)

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
    ) -> Deployment:
        """`name` serving a new version of `MODEL` with `fault`, once it answers benign rows;
        `fallback=None` configures none."""
        version = self.register(
            MODEL, lambda f: faulty_model(f, fault, release=self.release, switch=switch, tag=name)
        )
        extra: dict[str, Any] = {} if fallback is None else {"fallback": fallback}
        self.client.create_deployment(
            name,
            model=MODEL,
            version=version,
            timeout_ms=DEADLINE_MS,
            failover=FAILOVER if failover else None,
            **extra,
        )
        deployment = Deployment(name, version)
        self.until_champion(deployment)
        return deployment

    def predict(self, deployment: str, rows: list[list[float]]) -> Reply:
        started = time.perf_counter()
        response = self.http.post(f"/v1/deployments/{deployment}/predict", json={"instances": rows})
        latency_ms = (time.perf_counter() - started) * 1000
        version = response.headers.get("x-turnout-model-version")
        return Reply(
            response.status_code,
            response.headers.get("x-turnout-role"),
            None if version is None else int(version),
            response.json(),
            latency_ms,
        )

    def until_champion(self, deployment: Deployment, *, timeout_s: float = RECOVERY_S) -> float:
        """Seconds until a benign row is answered by the champion (again)."""
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            reply = self.predict(deployment.name, [BENIGN_ROW])
            if reply.status == 200 and reply.role == "champion":
                assert (reply.version, reply.body["predictions"]) == (
                    deployment.champion,
                    [HEALTHY_VALUE],
                )
                return time.monotonic() - started
            time.sleep(0.05)
        pytest.fail(f"{deployment.name}: the champion did not answer within {timeout_s}s")

    def champion_counters(
        self, deployment: Deployment, done: Callable[[dict[str, Any]], bool]
    ) -> dict[str, Any]:
        """The merged counters of the champion, once `done` holds for them."""
        deadline = time.monotonic() + REPORT_WAIT_S
        row: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            traffic = self.client.show_deployment(deployment.name)["traffic"]
            row = next(
                (
                    r
                    for r in traffic
                    if (r["version"], r["role"]) == (deployment.champion, "champion")
                ),
                None,
            )
            if row is not None and done(row):
                return row
            time.sleep(0.2)
        pytest.fail(f"{deployment.name}: no champion counters satisfying the check; last: {row}")

    def still_serving(self) -> None:
        """The gateway is live and a healthy deployment on it answers."""
        assert self.http.get("/v2/health/live").status_code == 200
        reply = self.predict("healthy", [FAULTY_ROW])
        assert (reply.status, reply.role, reply.body["predictions"]) == (200, "champion", [1.0])


def bench(tmp: Path, env: dict[str, str]) -> Iterator[Bench]:
    server = LiveServer(tmp / "home", env=env).start()
    folder = tmp / "models"
    folder.mkdir()
    release = tmp / "release"
    try:
        with server.client() as client, httpx.Client(base_url=server.url, timeout=30) as http:
            live = Bench(server, client, http, folder, release)
            assert live.register(MODEL, lambda f: constant_model(f, FAILOVER_VALUE)) == FAILOVER
            assert live.register("healthy", lambda f: constant_model(f, 1.0)) == 1
            client.create_deployment("healthy", model="healthy", version=1, timeout_ms=DEADLINE_MS)
            yield live
            for what, value in live.measured.items():
                print(f"{tmp.name} {what}: {value:.1f}")
    finally:
        release.touch()
        server.stop()


@pytest.fixture(scope="module")
def process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    """Models in runner processes, which may grow only 200 MB past their loaded size and
    are taken as hung after 1 s (not 5 s, to keep the test short; `Fault.SLOW` takes 0.5 s)."""
    env = {"TURNOUT_RUNNER_MEMORY_MB": "200", "TURNOUT_RUNNER_HANG_MS": "1000"}
    yield from bench(tmp_path_factory.mktemp("process"), env)


@pytest.fixture(scope="module")
def threads(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    yield from bench(tmp_path_factory.mktemp("threads"), {"TURNOUT_RUNNER": "thread"})


def hammer(live: Bench, deployment: Deployment, n: int = REQUESTS) -> list[Reply]:
    return [live.predict(deployment.name, [FAULTY_ROW]) for _ in range(n)]


def check_answered_in_time(
    live: Bench, deployment: Deployment, replies: list[Reply], *, roles: set[str]
) -> None:
    """Every reply is a 200 from one of `roles` with that role's value, and the p99 of
    their latencies is within the deadline plus `SLACK_MS`."""
    assert {r.status for r in replies} == {200}, next(r.body for r in replies if r.status != 200)
    seen = Counter(r.role for r in replies)
    assert set(seen) <= roles, seen
    expected = {
        "champion": (deployment.champion, [HEALTHY_VALUE]),
        "failover": (FAILOVER, [FAILOVER_VALUE]),
        "fallback": (deployment.champion, [FALLBACK_VALUE]),
    }
    for reply in replies:
        assert (reply.version, reply.body["predictions"]) == expected[str(reply.role)], reply
    p99 = float(np.percentile([r.latency_ms for r in replies], 99))
    live.measured[f"{deployment.name} p99 ms"] = p99
    assert p99 <= DEADLINE_MS + SLACK_MS, f"p99 {p99:.1f} ms; roles {seen}"


# -- each fault, in runner processes -----------------------------------------------------------


@pytest.mark.server
@pytest.mark.parametrize(
    "fault", [Fault.RAISES, Fault.SLOW, Fault.WRONG_ROWS, Fault.DICTS, Fault.OBJECTS]
)
def test_a_failing_champion_is_answered_for_in_time(process: Bench, fault: Fault) -> None:
    deployment = process.deploy(f"p-{fault}", fault)
    replies = hammer(process, deployment)
    check_answered_in_time(process, deployment, replies, roles={"failover", "fallback"})
    process.still_serving()


@pytest.mark.server
def test_a_hung_runner_is_killed_and_replaced(process: Bench) -> None:
    deployment = process.deploy("p-hangs", Fault.HANGS)
    replies = hammer(process, deployment)
    check_answered_in_time(process, deployment, replies, roles={"failover", "fallback"})
    process.still_serving()
    # the champion answers again only in a new process: the release file does not exist
    process.measured["p-hangs recovery s"] = process.until_champion(deployment)


@pytest.mark.server
def test_a_runner_that_exits_is_restarted(process: Bench) -> None:
    deployment = process.deploy("p-exits", Fault.EXITS)
    # a request without a deadline waits for the replacement, which times the restart
    process.client.create_deployment(
        "p-exits-patient", model=MODEL, version=deployment.champion, failover=FAILOVER
    )
    crash = process.predict("p-exits-patient", [FAULTY_ROW])
    assert (crash.status, crash.role) == (200, "failover")
    crashed = time.monotonic()
    time.sleep(0.2)  # past the first backoff: the replacement is starting
    restarted = process.predict("p-exits-patient", [BENIGN_ROW])
    assert (restarted.status, restarted.role) == (200, "champion")
    process.measured["p-exits restart ms"] = (time.monotonic() - crashed) * 1000

    replies = hammer(process, deployment)
    check_answered_in_time(process, deployment, replies, roles={"failover", "fallback"})
    process.still_serving()
    process.measured["p-exits recovery s"] = process.until_champion(deployment)


@pytest.mark.server
def test_a_runner_out_of_memory_is_restarted(process: Bench) -> None:
    """The leak answers properly until its runner reaches the cap, so the champion answers
    some requests; the call that hits the cap, and any made while the runner restarts (a
    fork: milliseconds), go down the chain."""
    deployment = process.deploy("p-leaks", Fault.LEAKS)
    replies = hammer(process, deployment)
    check_answered_in_time(process, deployment, replies, roles={"champion", "failover", "fallback"})
    roles = Counter(r.role for r in replies)
    assert roles["champion"] > 0
    assert roles["failover"] + roles["fallback"] > 0
    process.still_serving()
    process.measured["p-leaks recovery s"] = process.until_champion(deployment)


# -- the end of the chain ----------------------------------------------------------------------


@pytest.mark.server
def test_without_failover_the_fallback_value_answers_as_configured(process: Bench) -> None:
    label = process.deploy("p-label", Fault.RAISES, failover=False, fallback={"label": "unknown"})
    reply = process.predict(label.name, [FAULTY_ROW, FAULTY_ROW])
    assert (reply.status, reply.role, reply.version) == (200, "fallback", label.champion)
    assert reply.body["predictions"] == [{"label": "unknown"}] * 2

    process.client.create_deployment(
        "p-zero", model=MODEL, version=label.champion, timeout_ms=DEADLINE_MS, fallback=0
    )
    tensor = {"name": "input-0", "datatype": "FP64", "shape": [2, 30], "data": FAULTY_ROW * 2}
    response = process.http.post("/v2/models/p-zero/infer", json={"inputs": [tensor]})
    assert response.status_code == 200, response.text
    assert response.headers["x-turnout-role"] == "fallback"
    body = response.json()
    assert body["parameters"]["role"] == "fallback"
    assert body["outputs"][0]["datatype"] == "INT64"
    assert body["outputs"][0]["data"] == [0, 0]


@pytest.mark.server
@pytest.mark.parametrize(
    ("fault", "says"),
    [(Fault.RAISES, "RuntimeError: the feature cache exploded"), (Fault.SLOW, "timed out")],
)
def test_with_neither_failover_nor_fallback_the_answer_is_a_503(
    process: Bench, fault: Fault, says: str
) -> None:
    deployment = process.deploy(f"p-bare-{fault}", fault, failover=False, fallback=None)
    replies = [process.predict(deployment.name, [FAULTY_ROW]) for _ in range(5)]
    for reply in replies:
        assert reply.status == 503
        assert says in reply.body["error"], reply.body
        assert "no fallback value" in reply.body["error"], reply.body
    latencies = sorted(r.latency_ms for r in replies)
    process.measured[f"{deployment.name} max ms"] = latencies[-1]
    assert latencies[len(latencies) // 2] <= DEADLINE_MS + SLACK_MS, latencies  # not a hang


# -- the circuit breaker -----------------------------------------------------------------------


@pytest.mark.server
def test_the_breaker_skips_a_failing_champion_until_it_recovers(
    process: Bench, tmp_path: Path
) -> None:
    switch = tmp_path / "slow"
    switch.touch()
    deployment = process.deploy("p-breaker", Fault.SLOW, switch=switch)
    replies = hammer(process, deployment, BREAKER_MIN_CALLS + 30)
    opened = time.monotonic()  # a little after it opened
    assert {r.role for r in replies} == {"failover"}
    waited = list(itertools.takewhile(lambda r: r.latency_ms > DEADLINE_MS / 2, replies))
    assert len(waited) >= BREAKER_MIN_CALLS - 1  # the benign call of `deploy` counts too
    skipped = sorted(r.latency_ms for r in replies[len(waited) :])
    assert len(skipped) >= 30
    assert skipped[len(skipped) // 2] < DEADLINE_MS / 5, skipped  # straight to the failover
    counters = process.champion_counters(deployment, lambda row: row["rejected"] >= len(skipped))
    assert counters["timeouts"] >= len(waited)

    switch.unlink()
    time.sleep(max(0.0, opened + BREAKER_OPEN_S - time.monotonic()))
    recovered = process.predict(deployment.name, [FAULTY_ROW])
    while recovered.role != "champion" and time.monotonic() - opened < RECOVERY_S:
        time.sleep(0.1)
        recovered = process.predict(deployment.name, [FAULTY_ROW])
    assert (recovered.status, recovered.role) == (200, "champion")
    assert recovered.body["predictions"] == [HEALTHY_VALUE]
    assert {r.role for r in hammer(process, deployment, 10)} == {"champion"}


# -- models in the gateway's own threads --------------------------------------------------------


@pytest.mark.server
def test_in_thread_mode_a_raising_champion_is_answered_for_in_time(threads: Bench) -> None:
    deployment = threads.deploy("t-raises", Fault.RAISES)
    replies = hammer(threads, deployment)
    check_answered_in_time(threads, deployment, replies, roles={"failover", "fallback"})
    threads.still_serving()


@pytest.mark.server
def test_in_thread_mode_a_hung_champion_is_answered_for_in_time(threads: Bench) -> None:
    """A thread cannot be killed: the champion stays stuck, yet every request is answered."""
    deployment = threads.deploy("t-hangs", Fault.HANGS)
    replies = hammer(threads, deployment)
    check_answered_in_time(threads, deployment, replies, roles={"failover", "fallback"})
    threads.still_serving()


# -- the batcher on its own ---------------------------------------------------------------------


def test_a_failed_batch_is_not_retried_for_callers_that_gave_up() -> None:
    """When a merged call fails, each request is retried alone, but only those still
    waiting: a request past its deadline must not hold the runner any longer."""
    calls: list[tuple[int, asyncio.Event]] = []

    async def call(rows: Array) -> Prediction:
        finish = asyncio.Event()
        calls.append((len(rows), finish))
        await finish.wait()
        raise RuntimeError("the runner died")

    async def turn() -> None:
        for _ in range(10):
            await asyncio.sleep(0)

    async def scenario() -> None:
        batcher = Batcher(call)
        row = np.zeros((1, 2))
        first = asyncio.ensure_future(batcher.predict(row))
        await turn()
        queued = [asyncio.ensure_future(batcher.predict(row)) for _ in range(3)]
        await turn()
        calls[0][1].set()
        with pytest.raises(RuntimeError, match="died"):
            await first
        await turn()
        assert [rows for rows, _ in calls] == [1, 3]  # the queued three, merged
        for request in queued:
            request.cancel()  # their deadlines pass
        calls[1][1].set()
        await asyncio.gather(*queued, return_exceptions=True)
        await turn()
        assert [rows for rows, _ in calls] == [1, 3]

    asyncio.run(scenario())
