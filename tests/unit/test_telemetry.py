"""Trace context in NATS headers: carried from inside a span, nothing added outside any."""

from __future__ import annotations

from opentelemetry import trace

from shared.telemetry import configure_tracing, inject_headers


def test_an_append_inside_a_span_carries_its_context_and_one_outside_carries_none() -> None:
    configure_tracing("test")
    assert inject_headers({"Nats-Msg-Id": "x"}) == {"Nats-Msg-Id": "x"}
    with trace.get_tracer("test").start_as_current_span("handle") as span:
        headers = inject_headers({"Nats-Msg-Id": "x"})
    trace_id = format(span.get_span_context().trace_id, "032x")
    assert headers["traceparent"].split("-")[1] == trace_id
