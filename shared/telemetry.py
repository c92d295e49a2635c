"""OpenTelemetry tracing with the context carried in NATS message headers (W3C traceparent)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

_configured = False


def configure_tracing(service: str) -> None:
    """Install a tracer provider once per process. OTEL_TRACES_EXPORTER=console prints spans."""
    global _configured
    if _configured:
        return
    provider = TracerProvider(resource=Resource.create({"service.name": f"hive-{service}"}))
    if os.environ.get("OTEL_TRACES_EXPORTER", "") == "console":
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    trace.set_tracer_provider(provider)
    _configured = True


def tracer(name: str) -> trace.Tracer:
    return trace.get_tracer(name)


def inject_headers(headers: dict[str, str]) -> dict[str, str]:
    """Add the current trace context to outgoing NATS headers. Outside any span or baggage (a
    router's decisions, most appends) there is nothing to carry: the propagators are not asked."""
    if otel_context.get_current():
        propagate.inject(headers)
    return headers


@contextmanager
def continued_span(name: str, headers: Mapping[str, str] | None, **attributes: str | int) -> Iterator[None]:
    """Run the block in a span whose parent is the context found in incoming headers."""
    parent = propagate.extract(dict(headers or {}))
    token = otel_context.attach(parent)
    try:
        with trace.get_tracer("hive").start_as_current_span(name, attributes=attributes):
            yield
    finally:
        otel_context.detach(token)
