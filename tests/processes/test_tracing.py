"""Traces from the web processes as `make run` starts them, sent to a fake OTLP/HTTP collector: the
gateway call's server span with its routing, and the upstream call as its child."""

from __future__ import annotations

import gzip
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from django.db import connection
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tests.fixtures.web import serving_web

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


class FakeCollector:
    """An OTLP/HTTP collector in a thread: every span posted to ``/v1/traces``, decoded."""

    def __init__(self):
        self.spans = []  # (span, {attribute: value})
        self.paths = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                collector.paths.append(self.path)
                for resource_spans in request.resource_spans:
                    for scope_spans in resource_spans.scope_spans:
                        for span in scope_spans.spans:
                            attributes = {a.key: _value(a.value) for a in span.attributes}
                            collector.spans.append((span, attributes))
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def span_named(self, name: str, timeout: float = 20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for span, attributes in list(self.spans):
                if span.name == name:
                    return span, attributes
            time.sleep(0.1)
        raise AssertionError(f"no span {name!r} among {[span.name for span, _ in self.spans]}")


def _value(value):
    return getattr(value, value.WhichOneof("value")) if value.WhichOneof("value") else None


@pytest.fixture
def collector():
    collector = FakeCollector()
    collector.thread.start()
    yield collector
    collector.server.shutdown()
    collector.server.server_close()


def test_a_gateway_call_is_a_trace_with_its_routing_and_the_upstream_call(
    collector, gateway_llms, upstream, tenant_and_key, transactional_db, tmp_path
):
    with serving_web(
        database=connection.settings_dict["NAME"],
        log_path=tmp_path / "web.log",
        OTEL_EXPORTER_OTLP_ENDPOINT=collector.url,
        OTEL_SERVICE_NAME="routerhub-test",
        OTEL_BSP_SCHEDULE_DELAY="100",
    ) as url:
        response = httpx.post(
            url + "/v1/chat/completions",
            json={"model": "routerhub-auto", "messages": [{"role": "user", "content": "What is 2+2?"}]},
            headers={"Authorization": f"Bearer {tenant_and_key[1]}"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        server, attributes = collector.span_named("POST /v1/chat/completions")
        upstream_span, upstream_attributes = collector.span_named("POST")

    assert collector.paths and all(path == "/v1/traces" for path in collector.paths)
    assert server.kind == server.SPAN_KIND_SERVER
    assert attributes["routerhub.llm"] == response.headers["X-Routerhub-Model"]
    assert attributes["routerhub.decision_id"] == response.headers["X-Routerhub-Decision-Id"]
    assert attributes["routerhub.request_id"] == response.headers["X-Request-Id"]
    assert attributes["routerhub.model"] == "routerhub-auto"
    assert float(attributes["routerhub.estimated_cost_usd"]) > 0
    assert float(attributes["routerhub.cost_usd"]) > 0
    assert attributes["routerhub.strategy"] and attributes["routerhub.state_version"] >= 1
    assert "routerhub.lam" in attributes and "routerhub.cluster" in attributes
    # The upstream call: a client span of the same trace, under the request's.
    assert upstream_span.kind == upstream_span.SPAN_KIND_CLIENT
    assert upstream_span.trace_id == server.trace_id
    assert upstream_attributes["http.url"] == upstream.url.rstrip("/") + "/chat/completions"
    assert upstream_attributes["http.status_code"] == 200
    # Its database queries too (psycopg), run in the gateway's threads in the request's context.
    assert any(
        span.trace_id == server.trace_id and attributes.get("db.system") == "postgresql"
        for span, attributes in collector.spans
    )
