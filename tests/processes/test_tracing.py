"""Traces from the web and worker processes as `make run` starts them, sent to a fake OTLP/HTTP
collector: the gateway call's server span with its routing, and the upstream call as its child; a job
queued by a request, run by a Celery worker, as a span of the request's trace."""

from __future__ import annotations

import gzip
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
import redis
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from registry.models import LLM
from routing.models import Job
from tests.fixtures.web import serving_web
from tests.processes.workers import start_worker

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


@pytest.fixture
def traced_broker(broker_url, collector, transactional_db, tmp_path):
    """A database of the session's Redis of its own, emptied, and a traced worker consuming its default
    queue: the one a web process sends jobs to."""
    url = broker_url.rsplit("/", 1)[0] + "/5"
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    worker = start_worker(
        broker_url=url,
        database_name=connection.settings_dict["NAME"],
        log_path=tmp_path / "worker.log",
        queue="celery",
        OTEL_EXPORTER_OTLP_ENDPOINT=collector.url,
        OTEL_BSP_SCHEDULE_DELAY="100",
    )
    try:
        yield url
    finally:
        worker.stop()


def test_a_gateway_call_and_a_job_a_request_queues_are_traced_through_the_upstream_and_the_worker(
    collector, traced_broker, gateway_llms, upstream, tenant_and_key, transactional_db, tmp_path
):
    """One web process and one worker for both (each start costs seconds): the gateway call's trace with
    its routing and upstream call; a staff request's trace continued by the worker that runs its job."""
    # A staff session made here (no password hashing): the web process reads it from the database.
    staff = Client()
    staff.force_login(get_user_model().objects.create_superuser("operator", password="pw-123456"))
    csrf = "c" * 32
    with serving_web(
        database=connection.settings_dict["NAME"],
        log_path=tmp_path / "web.log",
        CELERY_BROKER_URL=traced_broker,
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
        # LLMs without an API: the job then has nothing to profile, and queues no jobs of its own.
        LLM.objects.update(api_base="")
        queued = httpx.post(
            url + "/api/v1/jobs",
            json={"kind": "reprofile_all"},
            cookies={"sessionid": staff.cookies["sessionid"].value, "csrftoken": csrf},
            headers={"X-CSRFToken": csrf},
            timeout=30,
        )
        assert queued.status_code == 202, queued.text
        request, _ = collector.span_named("POST /api/v1/jobs")
        sent, sent_attributes = collector.span_named("apply_async/routing.reprofile_all_llms")
        run, run_attributes = collector.span_named("run/routing.reprofile_all_llms")

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

    job = Job.objects.get(id=queued.json()["job"]["id"])
    assert job.kind == "reprofile_all" and job.status == Job.Status.SUCCEEDED, (job.status, job.error)
    assert job.result == {"state_version": gateway_llms.version, "queued": []}
    # Sent from the request (a producer span under it), run by the worker as the sent span's child.
    assert sent.trace_id == request.trace_id and sent.kind == sent.SPAN_KIND_PRODUCER
    assert run.trace_id == request.trace_id and run.kind == run.SPAN_KIND_CONSUMER
    assert run.parent_span_id == sent.span_id
    assert run_attributes["celery.task_name"] == "routing.reprofile_all_llms"
    assert sent_attributes["messaging.message.id"] == run_attributes["messaging.message.id"] == job.celery_task_id
    # The worker's queries are spans of the same trace too.
    assert any(
        span.trace_id == request.trace_id and span.parent_span_id == run.span_id
        for span, attributes in collector.spans
        if attributes.get("db.system") == "postgresql"
    )
