"""Outgoing webhooks: every rollout event POSTed, in order, to one URL.

`send` only puts the event on a bounded queue, so the controller never waits on a receiver;
one background thread delivers the queue in order, retrying connection errors, 5xx and 429
with exponential backoff. A full queue drops the event and counts it; an event that is
refused (4xx) or keeps failing is counted as failed and logged, never raised.

With a secret, each request carries `x-turnout-signature: sha256=<hex>`, the HMAC-SHA256
of the raw body, so the receiver can check that turnout sent it.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import hmac
import logging
import queue
import threading
import time
from http import HTTPStatus

import httpx
import orjson

from turnout.store.clock import now
from turnout.store.records import RolloutRecord
from turnout.types import JSON

log = logging.getLogger("turnout.controller")

MAX_BACKOFF_S = 30.0
"""The longest wait between two attempts to deliver one event."""


class _Attempt(enum.Enum):
    SENT = "sent"
    RETRY = "retry"
    REFUSED = "refused"


def event_body(
    rollout: RolloutRecord, kind: str, detail: dict[str, JSON], step: str | None = None
) -> dict[str, JSON]:
    """The JSON a webhook receives for one rollout event."""
    return {
        "deployment": rollout.deployment,
        "rollout": rollout.id,
        "version": rollout.version,
        "step": step or rollout.step,
        "kind": kind,
        "detail": detail,
        "at": now().isoformat(),
    }


def _host(url: str | None) -> str:
    """The receiver as logged: its host only; the URL's path and query may hold a secret
    (chat and incident webhooks put their key there)."""
    try:
        return httpx.URL(url or "").host or "(no host)"
    except httpx.InvalidURL:
        return "(invalid URL)"


def _without(reason: str, url: str | None, host: str) -> str:
    """A failure's text with the URL (which some errors quote) replaced by its host."""
    return reason.replace(url, host) if url else reason


def signature(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


class Notifier:
    """Delivers events to `url` from one background thread; `url=None` turns it off."""

    def __init__(
        self,
        url: str | None,
        *,
        secret: str | None = None,
        max_queue: int = 1000,
        attempts: int = 5,
        backoff_s: float = 0.5,
        timeout_s: float = 5.0,
    ) -> None:
        self.url = url
        self.secret = secret.encode() if secret else None
        self.attempts = max(1, attempts)
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self._queue: queue.Queue[dict[str, JSON] | None] = queue.Queue(maxsize=max_queue)
        """Events in order; None tells the worker to stop."""
        self._lock = threading.Lock()
        self._counts = {"sent": 0, "failed": 0, "dropped": 0, "queued": 0}
        self._closing = threading.Event()
        self._abandon = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the caller's side ------------------------------------------------------------------

    def send(self, event: dict[str, JSON]) -> None:
        """Queue `event` for delivery; never blocks, never raises."""
        if self.url is None:
            return
        if self._closing.is_set():
            self._count("dropped")
            return
        with self._lock:  # counted before the worker can take it
            try:
                self._queue.put_nowait(event)
            except queue.Full:
                self._counts["dropped"] += 1
            else:
                self._counts["queued"] += 1

    def start(self) -> None:
        if self.url is None or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="turnout-notifier", daemon=True)
        self._thread.start()

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop taking events and deliver what is queued, for at most `timeout_s`; what is
        still undelivered then is dropped (counted)."""
        self._closing.set()
        self.start()
        thread = self._thread
        if thread is None:
            return
        deadline = time.monotonic() + timeout_s
        with contextlib.suppress(queue.Full):  # the worker stops at the deadline anyway
            self._queue.put(None, timeout=timeout_s)
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            self._abandon.set()

    def stats(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    # -- the worker's side ------------------------------------------------------------------

    def _run(self) -> None:
        with httpx.Client(timeout=self.timeout_s) as client:
            while not self._abandon.is_set():
                event = self._queue.get()
                if event is None:
                    break
                self._count("queued", -1)
                delivered = self._deliver(client, event)
                self._count("sent" if delivered else "failed")
        self._discard()

    def _deliver(self, client: httpx.Client, event: dict[str, JSON]) -> bool:
        kind = str(event.get("kind", ""))
        try:
            body = orjson.dumps(event, option=orjson.OPT_NON_STR_KEYS)
        except TypeError as exc:
            log.warning("webhook: event %s cannot be encoded as JSON: %s", kind, exc)
            return False
        headers = {"content-type": "application/json", "x-turnout-event": kind}
        if self.secret is not None:
            headers["x-turnout-signature"] = signature(self.secret, body)
        tried, reason = 0, ""
        while tried < self.attempts:
            if tried and self._abandon.wait(self._backoff_s(tried - 1)):
                reason += " (given up at shutdown)"
                break
            outcome, reason = self._post(client, body, headers)
            tried += 1
            if outcome is _Attempt.SENT:
                return True
            if outcome is _Attempt.REFUSED:
                break
        host = _host(self.url)
        log.warning(
            "webhook: event %s of rollout %s not delivered to %s after %d attempt(s): %s",
            kind, event.get("rollout"), host, tried, _without(reason, self.url, host),
        )  # fmt: skip
        return False

    def _post(
        self, client: httpx.Client, body: bytes, headers: dict[str, str]
    ) -> tuple[_Attempt, str]:
        assert self.url is not None
        try:
            response = client.post(self.url, content=body, headers=headers)
        except httpx.TransportError as exc:
            return _Attempt.RETRY, f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # a malformed URL and the like: retrying cannot help
            return _Attempt.REFUSED, f"{type(exc).__name__}: {exc}"
        status = response.status_code
        if status < 300:
            return _Attempt.SENT, ""
        reason = f"HTTP {status}"
        if status >= 500 or status == HTTPStatus.TOO_MANY_REQUESTS:
            return _Attempt.RETRY, reason
        return _Attempt.REFUSED, reason

    def _backoff_s(self, retry: int) -> float:
        return float(min(self.backoff_s * 2**retry, MAX_BACKOFF_S))

    def _discard(self) -> None:
        """Count what is left on the queue after shutdown as dropped."""
        while True:
            try:
                event = self._queue.get_nowait()
            except queue.Empty:
                return
            if event is not None:
                with self._lock:
                    self._counts["queued"] -= 1
                    self._counts["dropped"] += 1

    def _count(self, key: str, by: int = 1) -> None:
        with self._lock:
            self._counts[key] += by
