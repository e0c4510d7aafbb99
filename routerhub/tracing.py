"""OpenTelemetry traces, on when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set; off (nothing imported or
installed) otherwise.

Each request served by the web processes becomes a server span (``OpenTelemetryMiddleware`` around the
whole ASGI application: the gateway and bearer API calls are served by ``routerhub/handlers.py``, not
Django's handler, so Django's own instrumentation would miss them); its upstream calls (httpx), its
database queries (psycopg) and the Celery tasks it sends and runs are child spans. The gateway adds its
routing to the request's span (``routing/request_log.py``: ``routerhub.*`` attributes). Spans go in
batches, from a thread of each process, to the OTLP/HTTP endpoint; the standard ``OTEL_*`` variables of
the SDK (sampler, headers, timeouts) apply.
"""

from __future__ import annotations

from collections.abc import Mapping

from routerhub import config

_configured = False


def configure(environ: Mapping[str, str] | None = None) -> bool:
    """Install the exporter and the instrumentation in this process once; False when tracing is off."""
    global _configured
    if not config.get("OTEL_EXPORTER_OTLP_ENDPOINT", environ):
        return False
    if _configured:
        return True
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: config.get("OTEL_SERVICE_NAME", environ)}))
    # The exporter reads OTEL_EXPORTER_OTLP_ENDPOINT itself (and adds /v1/traces to it).
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    HTTPXClientInstrumentor().instrument()
    # No SQL comments: they would make every statement distinct to PostgreSQL's statement statistics.
    PsycopgInstrumentor().instrument(enable_commenter=False)
    CeleryInstrumentor().instrument()
    _configured = True
    return True


def traced(application):
    """``application`` in a server span per request when tracing is on; itself, untouched, when off."""
    if not configure():
        return application
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    return OpenTelemetryMiddleware(application)
