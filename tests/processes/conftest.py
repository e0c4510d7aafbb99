"""Process-level fixtures: a real Redis broker and a real Celery worker process, and a live server
with a real listen backlog."""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager

import pytest
from django.core.servers.basehttp import ThreadedWSGIServer

from routing.caches import reset_all

# The live server (Django's ThreadedWSGIServer) listens with socketserver's backlog of 5: a burst of
# 60 simultaneous connections overflows it and the kernel resets some. The web server of
# scripts/web.sh listens with a backlog of 2048; give the test server a real backlog too. Set at import, before any live server
# of the session starts.
ThreadedWSGIServer.request_queue_size = 256


@pytest.fixture(scope="session")
def broker_url(tmp_path_factory):
    from tests.processes.workers import start_redis, stop_process

    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    process, url = start_redis(tmp_path_factory.mktemp("redis"))
    yield url
    stop_process(process)


@pytest.fixture(scope="session")
def celery_worker_process(django_db_setup, django_db_blocker, broker_url, tmp_path_factory):
    """One worker for the session, consuming a queue of its own, on the test database."""
    from django.db import connection

    from routerhub.celery import app
    from tests.processes.workers import point_producer_at, restore_producer, start_worker

    worker = start_worker(
        broker_url=broker_url,
        database_name=connection.settings_dict["NAME"],
        log_path=tmp_path_factory.mktemp("worker") / "worker.log",
    )
    previous = point_producer_at(app, broker_url=broker_url, queue=worker.queue)
    try:
        yield worker
    finally:
        restore_producer(app, previous)
        worker.stop()


@pytest.fixture
def worker(celery_worker_process, transactional_db):
    """The worker, with committed rows it can see (``transactional_db``)."""
    reset_all()
    yield celery_worker_process
    reset_all()
    assert celery_worker_process.process.poll() is None, celery_worker_process.log()[-4000:]


@pytest.fixture
def ledger_upstream(tmp_path):
    """The ledger upstream (``tests/fakes/ledger_upstream.py``) in its own process, keeping its own
    ledger of what it billed."""
    from tests.fixtures.web import wait_until_answering
    from tests.processes.redteam import UpstreamProcess
    from tests.processes.workers import PROJECT_DIR, free_port, stop_process

    port = free_port()
    log_path = tmp_path / "upstream.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.fakes.ledger_upstream", "--port", str(port)],
            cwd=PROJECT_DIR,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    upstream = UpstreamProcess(port, process, log_path)
    wait_until_answering(upstream.url + "/ledger", process, log_path)
    yield upstream
    stop_process(process)


@contextmanager
def web_pair(request, tmp_path, *, upstream_url: str, log_name: str, **env):
    """Two web processes (scripts/web.sh) on the test database, serving the slice's LLMs at
    ``upstream_url``. They boot while the router is fitted; the first call each makes reads the LLMs as
    they are by then."""
    from django.db import connection
    from django.db.models import F
    from django.utils import timezone

    from registry.models import LLM
    from tests.fixtures.web import start_web, wait_until_answering
    from tests.processes.redteam import WebServer

    servers = []
    for index in range(2):
        log_path = tmp_path / f"{log_name}{index}.log"
        process, url = start_web(database=connection.settings_dict["NAME"], log_path=log_path, **env)
        servers.append(WebServer(index=index, url=url, process=process, log_path=log_path))
    try:
        request.getfixturevalue("fitted")
        LLM.objects.update(api_base=upstream_url, api_model=F("name"), updated_at=timezone.now())
        reset_all()
        for server in servers:
            wait_until_answering(server.url + "/api/v1/health", server.process, server.log_path)
        yield servers
    finally:
        for server in servers:
            server.stop()  # their pooled connections close before the test database is flushed
