from __future__ import annotations

import hashlib
import hmac
import logging
import socket
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import orjson
import pytest

from tests.fixtures.webhooks import Receiver
from turnout.lifecycle.notify import Notifier, event_body
from turnout.store.records import RolloutRecord
from turnout.types import JSON


@pytest.fixture
def notifiers() -> Iterator[Callable[..., Notifier]]:
    made: list[Notifier] = []

    def make(url: str | None, **options: float | str) -> Notifier:
        options = {"backoff_s": 0.01, "timeout_s": 2.0, **options}
        notifier = Notifier(url, **options)  # type: ignore[arg-type]
        made.append(notifier)
        return notifier

    yield make
    for notifier in made:
        notifier.close(timeout_s=1.0)


def event(n: int, kind: str = "passed") -> dict[str, JSON]:
    return {"rollout": 1, "kind": kind, "n": n}


def wait_for(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_delivers_in_order_with_headers_and_signature(
    receiver: Receiver, notifiers: Callable[..., Notifier]
) -> None:
    notifier = notifiers(receiver.url, secret="s3cret")
    notifier.start()
    kinds = ["passed", "waiting", "promoted", "rolled_back"] * 5
    for n, kind in enumerate(kinds):
        notifier.send(event(n, kind))
    notifier.close()

    assert [e["n"] for e in receiver.delivered()] == list(range(len(kinds)))
    for request, kind in zip(receiver.received, kinds, strict=True):
        assert request.headers["content-type"] == "application/json"
        assert request.headers["x-turnout-event"] == kind
        expected = hmac.new(b"s3cret", request.body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(request.headers["x-turnout-signature"], f"sha256={expected}")
    assert notifier.stats() == {"sent": 20, "failed": 0, "dropped": 0, "queued": 0}


def test_no_signature_without_a_secret(
    receiver: Receiver, notifiers: Callable[..., Notifier]
) -> None:
    notifier = notifiers(receiver.url)
    notifier.start()
    notifier.send(event(0))
    notifier.close()
    assert "x-turnout-signature" not in receiver.received[0].headers


@pytest.mark.parametrize("status", [500, 503, 429])
def test_retries_then_succeeds(
    receiver: Receiver, notifiers: Callable[..., Notifier], status: int
) -> None:
    receiver.failures, receiver.status = 2, status
    notifier = notifiers(receiver.url, attempts=5)
    notifier.start()
    notifier.send(event(0))
    notifier.close()

    assert [r.status for r in receiver.received] == [status, status, 204]
    assert len({r.body for r in receiver.received}) == 1
    assert notifier.stats()["sent"] == 1
    assert notifier.stats()["failed"] == 0


def test_gives_up_after_attempts_and_moves_on(
    receiver: Receiver, notifiers: Callable[..., Notifier], caplog: pytest.LogCaptureFixture
) -> None:
    receiver.failures = 3
    notifier = notifiers(receiver.url, attempts=3)
    notifier.start()
    with caplog.at_level(logging.WARNING, logger="turnout.controller"):
        notifier.send(event(0))
        notifier.send(event(1))
        notifier.close()

    assert [r.status for r in receiver.received] == [500, 500, 500, 204]
    assert receiver.delivered() == [event(1)]
    assert notifier.stats() == {"sent": 1, "failed": 1, "dropped": 0, "queued": 0}
    assert "after 3 attempt(s): HTTP 500" in caplog.text


def test_client_error_is_not_retried(
    receiver: Receiver, notifiers: Callable[..., Notifier]
) -> None:
    receiver.failures, receiver.status = 1, 400
    notifier = notifiers(receiver.url, attempts=5)
    notifier.start()
    notifier.send(event(0))
    notifier.send(event(1))
    notifier.close()

    assert [r.status for r in receiver.received] == [400, 204]
    assert notifier.stats() == {"sent": 1, "failed": 1, "dropped": 0, "queued": 0}


def test_full_queue_drops_and_counts(
    receiver: Receiver, notifiers: Callable[..., Notifier]
) -> None:
    notifier = notifiers(receiver.url, max_queue=2)
    for n in range(5):
        notifier.send(event(n))
    assert notifier.stats() == {"sent": 0, "failed": 0, "dropped": 3, "queued": 2}

    notifier.start()
    notifier.close()
    assert receiver.delivered() == [event(0), event(1)]
    assert notifier.stats() == {"sent": 2, "failed": 0, "dropped": 3, "queued": 0}


def test_close_delivers_what_is_queued(
    receiver: Receiver, notifiers: Callable[..., Notifier]
) -> None:
    notifier = notifiers(receiver.url)
    notifier.start()
    for n in range(50):
        notifier.send(event(n))
    notifier.close(timeout_s=10.0)

    assert [e["n"] for e in receiver.delivered()] == list(range(50))
    assert notifier.stats()["sent"] == 50
    notifier.send(event(50))  # closed: nothing more is taken
    assert notifier.stats()["dropped"] == 1


def test_without_url_every_send_is_a_no_op(notifiers: Callable[..., Notifier]) -> None:
    notifier = notifiers(None, secret="s3cret")
    notifier.start()
    for n in range(3):
        notifier.send(event(n))
    notifier.close()
    assert notifier.stats() == {"sent": 0, "failed": 0, "dropped": 0, "queued": 0}


def test_a_receiver_that_is_down_never_blocks_send(notifiers: Callable[..., Notifier]) -> None:
    url = f"http://127.0.0.1:{closed_port()}/hook"
    notifier = notifiers(url, max_queue=10, attempts=3, backoff_s=0.2)
    notifier.start()
    began = time.monotonic()
    for n in range(100):
        notifier.send(event(n))
    assert time.monotonic() - began < 1.0  # loose: the point is that nothing waits on HTTP
    assert notifier.stats()["sent"] == 0

    notifier.close(timeout_s=0.3)
    wait_for(lambda: notifier.stats()["queued"] == 0)
    stats = notifier.stats()
    assert stats["sent"] == 0
    assert stats["failed"] >= 1
    assert stats["failed"] + stats["dropped"] == 100


def test_event_body() -> None:
    at = datetime(2024, 5, 1, tzinfo=UTC)
    rollout = RolloutRecord(
        id=7, deployment="churn-prod", version=3, plan={}, state="running",
        step="challenge:10", step_started_at=at, base_revision=4, state_detail={},
        reason="", created_by="alice", created_at=at, updated_at=at, finished_at=None,
    )  # fmt: skip
    body = event_body(rollout, "passed", {"outcome": "pass"})
    assert body["at"] is not None
    assert datetime.fromisoformat(str(body["at"])).tzinfo is not None
    assert {k: v for k, v in body.items() if k != "at"} == {
        "deployment": "churn-prod",
        "rollout": 7,
        "version": 3,
        "step": "challenge:10",
        "kind": "passed",
        "detail": {"outcome": "pass"},
    }
    assert event_body(rollout, "promoted", {}, step="promote")["step"] == "promote"
    orjson.dumps(body)


@pytest.mark.parametrize("down", [False, True], ids=["refused", "unreachable"])
def test_a_failed_delivery_logs_the_host_never_the_url(
    receiver: Receiver,
    notifiers: Callable[..., Notifier],
    caplog: pytest.LogCaptureFixture,
    down: bool,
) -> None:
    """Webhook URLs often carry their key in the path or query (chat, incident tools)."""
    port = closed_port() if down else int(receiver.url.rsplit(":", 1)[1].split("/")[0])
    url = f"http://127.0.0.1:{port}/hooks/T000/B000/XoXsEcReT?token=tok-5ecret"
    receiver.failures = 1 if not down else 0
    receiver.status = 404
    notifier = notifiers(url, attempts=1)
    notifier.start()
    with caplog.at_level(logging.WARNING, logger="turnout.controller"):
        notifier.send(event(0))
        notifier.close()

    assert notifier.stats()["failed"] == 1
    assert "not delivered to 127.0.0.1" in caplog.text
    assert "XoXsEcReT" not in caplog.text
    assert "5ecret" not in caplog.text
