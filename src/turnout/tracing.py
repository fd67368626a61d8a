"""OpenTelemetry traces of predictions: off unless `TURNOUT_TRACING=otlp`.

A request is one span (`predict DEPLOYMENT`, a server span joined to the caller's trace
when it sends a W3C `traceparent`), tagged with deployment, revision, version, role and
rows. Its children are the chain's attempts (champion or challenger, then failover; each
with its outcome), and under an attempt the call to the model's runner, which may answer
other requests in the same batch. A fallback answer and the log record are events on the
request's span; a shadow's copy is a span of its own linked to the requests it mirrors.

Spans leave by OTLP over HTTP, configured by OpenTelemetry's own variables
(`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_BSP_SCHEDULE_DELAY`, ...).
Needs the `tracing` extra. Off, none of this costs the request path more than a test of one
module variable.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from turnout import __version__
from turnout.errors import BadRequest

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, SpanContext, Tracer

TRACER: Tracer | None = None
"""The tracer when tracing is on; None when off (every call site tests this first)."""
_provider: TracerProvider | None = None
INCOMING: ContextVar[str | None] = ContextVar("turnout_traceparent", default=None)
"""The caller's W3C `traceparent`, set by a protocol front for the request it serves."""

Attributes = Mapping[str, str | int | float | bool]


def configure(kind: str) -> None:
    """Turn tracing on in this process when `kind` is `otlp`."""
    global TRACER, _provider
    if kind != "otlp" or TRACER is not None:
        return
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        raise BadRequest(
            "TURNOUT_TRACING=otlp needs OpenTelemetry: pip install 'turnout[tracing]'"
        ) from None
    resource = Resource.create({"service.name": "turnout", "service.version": __version__})
    _provider = TracerProvider(resource=resource)
    _provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    TRACER = _provider.get_tracer("turnout")


def shutdown() -> None:
    """Send the spans still buffered (at the end of a worker's life)."""
    global TRACER, _provider
    if _provider is not None:
        _provider.shutdown()
    TRACER, _provider = None, None


@contextlib.contextmanager
def request_span(tracer: Tracer, deployment: str, traceparent: str | None) -> Iterator[Span]:
    """The span of one prediction request, the current span until the block ends."""
    from opentelemetry.trace import SpanKind
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    parent = (
        TraceContextTextMapPropagator().extract({"traceparent": traceparent})
        if traceparent
        else None
    )
    with tracer.start_as_current_span(
        f"predict {deployment}",
        context=parent,
        kind=SpanKind.SERVER,
        attributes={"turnout.deployment": deployment},
    ) as span:
        yield span


@contextlib.contextmanager
def child_span(tracer: Tracer, name: str, attributes: Attributes) -> Iterator[Span]:
    """A span under the current one (an attempt, a runner call)."""
    with tracer.start_as_current_span(name, attributes=attributes) as span:
        yield span


def current_context() -> SpanContext | None:
    """The current span's context, to link a shadow's copy to the request it mirrors."""
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    return context if context.is_valid else None


def linked_span(tracer: Tracer, name: str, links: list[Any], attributes: Attributes) -> Any:
    """A span of its own (no parent), linked to the spans in `links`."""
    from opentelemetry.context import Context
    from opentelemetry.trace import Link

    return tracer.start_as_current_span(
        name,
        context=Context(),
        links=[Link(context) for context in links if context is not None],
        attributes=attributes,
    )


def event(name: str, attributes: Attributes) -> None:
    """An event on the current span."""
    from opentelemetry import trace

    trace.get_current_span().add_event(name, attributes=attributes)
