"""OpenTelemetry traces of predictions, received by a real OTLP/HTTP endpoint in the test:
a request joins the caller's trace, its attempts and failover are child spans, a shadow's
copy is linked to it, and nothing is sent when tracing is off."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tests.fixtures.routing_models import ROW, constant_model, raising_model
from tests.fixtures.server import LiveServer

pytestmark = pytest.mark.server

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


class Collector:
    """An OTLP/HTTP traces endpoint keeping every span it is sent."""

    def __init__(self) -> None:
        self.spans: list[Any] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = ExportTraceServiceRequest.FromString(body)
                for resource in request.resource_spans:
                    for scope in resource.scope_spans:
                        collector.spans.extend(scope.spans)
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def wait_for(self, check: Any, timeout_s: float = 30) -> list[Any]:
        deadline = time.monotonic() + timeout_s
        while not check(self.spans):
            assert time.monotonic() < deadline, [s.name for s in self.spans]
            time.sleep(0.1)
        return self.spans


def attributes(span: Any) -> dict[str, Any]:
    values = {}
    for item in span.attributes:
        value = item.value
        values[item.key] = getattr(value, value.WhichOneof("value"))
    return values


@pytest.fixture
def collector() -> Iterator[Collector]:
    running = Collector()
    yield running
    running.server.shutdown()
    running.server.server_close()


def test_a_request_is_traced_through_failover_shadow_and_log_in_the_callers_trace(
    collector: Collector, tmp_path: Path
) -> None:
    env = {
        "TURNOUT_TRACING": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    server = LiveServer(tmp_path / "home", env=env).start()
    try:
        with server.client() as client:
            client.register("m", raising_model(tmp_path / "v1"), flavor="python")
            client.register("m", constant_model(tmp_path / "v2", 2.0), flavor="python")
            client.register("m", constant_model(tmp_path / "v3", 3.0), flavor="python")
            client.create_deployment("d", model="m", version=1, failover=2)
            client.route("d", shadows={3: 100})
        reply = httpx.post(
            f"{server.url}/v1/deployments/d/predict",
            json={"instances": [ROW]},
            headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"},
            timeout=60,
        )
        assert reply.status_code == 200, reply.text
        assert reply.headers["x-turnout-role"] == "failover"

        def complete(spans: list[Any]) -> bool:
            names = {s.name for s in spans}
            return {"predict d", "attempt m:1", "attempt m:2", "shadow m:3"} <= names

        spans = collector.wait_for(complete)
        ours = [s for s in spans if s.trace_id.hex() == TRACE_ID]
        (request,) = [s for s in ours if s.name == "predict d"]
        assert request.parent_span_id.hex() == PARENT_ID  # joined the caller's trace
        expected = {
            "turnout.deployment": "d", "turnout.version": 2, "turnout.role": "failover",
            "turnout.prediction_id": reply.headers["x-turnout-prediction-id"],
        }  # fmt: skip
        assert expected.items() <= attributes(request).items()
        assert "logged" in [e.name for e in request.events]
        attempts = {s.name: s for s in ours if s.name.startswith("attempt")}
        assert {a.parent_span_id for a in attempts.values()} == {request.span_id}
        assert attempts["attempt m:1"].status.code == 2  # ERROR: the champion raised
        assert attempts["attempt m:2"].status.code != 2
        runner_calls = [s for s in ours if s.name == "runner call"]
        assert runner_calls  # the call into the model's runner, under an attempt
        (shadow,) = [s for s in spans if s.name == "shadow m:3"]
        assert [link.span_id for link in shadow.links] == [request.span_id]
    finally:
        server.stop()


def test_nothing_is_sent_when_tracing_is_off(collector: Collector, tmp_path: Path) -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100"}
    server = LiveServer(tmp_path / "home", env=env).start()
    try:
        with server.client() as client:
            client.register("m", constant_model(tmp_path / "v1", 1.0), flavor="python")
            client.create_deployment("d", model="m", version=1)
        reply = httpx.post(
            f"{server.url}/v1/deployments/d/predict", json={"instances": [ROW]}, timeout=60
        )
        assert reply.status_code == 200
    finally:
        server.stop()  # a worker flushes its spans when it stops
    assert collector.spans == []
