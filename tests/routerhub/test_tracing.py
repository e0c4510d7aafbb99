"""Tracing off (``OTEL_EXPORTER_OTLP_ENDPOINT`` unset): nothing installed, the application untouched."""

from __future__ import annotations

import os

import httpx
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from routerhub import tracing
from routing import request_log


def test_without_an_endpoint_no_exporter_or_instrumentation_is_installed():
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in os.environ
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    from routerhub.asgi import application

    def app(scope, receive, send):
        return None

    assert tracing.configure() is False
    assert tracing.traced(app) is app
    # The ASGI application is the capped-bodies one itself, not wrapped in OpenTelemetry's middleware.
    assert not isinstance(application, OpenTelemetryMiddleware)
    assert application.__qualname__ == "capped_bodies.<locals>.application"
    assert not isinstance(trace.get_tracer_provider(), TracerProvider)
    # httpx's transports are the library's own (the instrumentation wraps them when installed).
    assert not hasattr(httpx.AsyncHTTPTransport.handle_async_request, "__wrapped__")
    assert not hasattr(httpx.HTTPTransport.handle_request, "__wrapped__")


def test_an_empty_endpoint_is_off_too():
    assert tracing.configure({"OTEL_EXPORTER_OTLP_ENDPOINT": ""}) is False


def test_request_notes_outside_a_trace_set_nothing():
    assert not trace.get_current_span().is_recording()
    request_log.on_span(llm="gpt-4o", cost_usd="0.01")  # no span: nothing to set, nothing raised
    notes = request_log.begin("abc")
    request_log.note(llm="gpt-4o")
    assert notes.llm == "gpt-4o"
