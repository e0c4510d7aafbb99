"""Schemathesis against the live test server: every operation of /api/schema/, generated valid and
invalid input, as a tenant (API key) and as staff (admin session). No answer may be a 5xx, and every
answer must match the schema (status codes, content types, bodies).

Bounded: ``FUZZ_MAX_EXAMPLES`` cases per operation and phase, a fixed seed, one worker. The figures
of each run (operations, test cases, failures) are printed and written to the JSON report.
"""

from __future__ import annotations

import json
import os
import secrets
import string
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from routerhub.celery import app
from tests.processes.workers import point_producer_at, restore_producer

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

FUZZ_MAX_EXAMPLES = int(os.environ.get("ROUTERHUB_FUZZ_MAX_EXAMPLES", "10"))
CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,"
    "response_headers_conformance,response_schema_conformance"
)


@pytest.fixture
def queued_nowhere(broker_url):
    """Jobs the fuzzer queues (registering LLMs) go to a real Redis queue that no worker reads."""
    previous = point_producer_at(app, broker_url=broker_url, queue="fuzz-nobody-listens")
    yield
    restore_producer(app, previous)


@pytest.fixture
def fuzz_settings(settings):
    # A fuzzer's bad keys are "failed authentications" from one address: the limit (tested in
    # tests/routing/apis/test_access.py) would turn most of its later calls into 429s.
    settings.ROUTERHUB_THROTTLE_FAILED_AUTH = ""
    settings.ROUTERHUB_THROTTLE_API_KEY = ""
    return settings


def staff_session_headers() -> list[str]:
    user = get_user_model().objects.create_superuser("fuzz-staff", password=secrets.token_urlsafe(16))
    client = Client()
    client.force_login(user)
    csrf = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(32))
    return [f"Cookie: sessionid={client.cookies['sessionid'].value}; csrftoken={csrf}", f"X-CSRFToken: {csrf}"]


def schemathesis_run(url: str, headers: list[str], report: Path) -> dict:
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{url}/api/schema/",
        "--checks",
        CHECKS,
        "--max-examples",
        str(FUZZ_MAX_EXAMPLES),
        "--seed",
        "20261201",
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--generation-database",
        "none",
        "--suppress-health-check",
        "all",
        "--no-color",
        "--report",
        "json",
        "--report-json-path",
        str(report),
    ]
    for header in headers:
        command += ["--header", header]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    print(result.stdout[-6000:])
    return {"returncode": result.returncode, "output": result.stdout + result.stderr}


@pytest.mark.parametrize("caller", ["tenant", "staff"])
def test_no_operation_answers_5xx_or_outside_its_schema(
    caller, live_server, fitted, make_tenant, queued_nowhere, fuzz_settings, tmp_path
):
    if caller == "tenant":
        _, key = make_tenant(name="fuzzed", budget_usd="1000")
        headers = [f"Authorization: Bearer {key}"]
    else:
        headers = staff_session_headers()
    run = schemathesis_run(live_server.url, headers, tmp_path / "report.json")
    report = json.loads((tmp_path / "report.json").read_text())
    operations, cases = report["operations"], report["test_cases"]
    print(
        f"\nschemathesis as {caller}: {operations['tested']}/{operations['total']} operations, "
        f"{cases['generated']} test cases, {cases['with_failures']} with failures "
        f"({cases['unique_failures']} unique), {len(report['errors'])} errors, {report['running_time']:.0f} s"
    )
    assert run["returncode"] == 0, run["output"][-8000:]
    assert operations["tested"] == operations["total"] == len(schema_operations(live_server.url))
    assert cases["generated"] >= 10 * operations["total"]
    assert (cases["with_failures"], report["errors"]) == (0, [])


def schema_operations(url: str) -> list[tuple[str, str]]:
    import requests
    import yaml

    schema = yaml.safe_load(requests.get(f"{url}/api/schema/", timeout=30).text)
    return [(path, method) for path, item in schema["paths"].items() for method in item]
