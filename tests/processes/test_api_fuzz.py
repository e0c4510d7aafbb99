"""Schemathesis against the live test server: every operation of /api/schema/, generated valid and
invalid input, as a tenant (API key) and as staff (admin session), with every check schemathesis
has: no 5xx, every answer as the schema describes it (status codes, content types, headers, bodies),
schema-valid requests accepted and schema-invalid ones refused, authentication enforced, the
stateful checks on what one operation's answer links to.

What the schema cannot state is told to schemathesis instead: the JSON reader's rules for every
value of a body (no NUL, no integer beyond 64 bits; documented in each 400 answer, but OpenAPI 3.0
cannot say them of free-form objects) are not generated; a 413 answers a body over the size cap,
valid or not (schemathesis.toml); and a valid request may be refused for what the database holds
(no such LLM, prompt set or fitted state; no LLM that cheap: schemathesis_hooks.py).

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
from tests.processes.workers import PROJECT_DIR, point_producer_at, restore_producer

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

FUZZ_MAX_EXAMPLES = int(os.environ.get("ROUTERHUB_FUZZ_MAX_EXAMPLES", "10"))
CHECKS = "all"
# The tenant's budget is far beyond what the fuzzer can spend (feedback may report up to
# ROUTERHUB_FEEDBACK_MAX_COST_USD per decision): a spent budget (402) is not what this test is about.
FUZZ_BUDGET_USD = "99999999"


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
        "--config-file",
        str(Path(__file__).with_name("schemathesis.toml")),
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
        "--generation-allow-x00",
        "false",
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
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.processes.schemathesis_hooks"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env, cwd=PROJECT_DIR)
    print(result.stdout[-6000:])
    return {"returncode": result.returncode, "output": result.stdout + result.stderr}


@pytest.mark.parametrize("caller", ["tenant", "staff"])
def test_no_operation_answers_5xx_or_outside_its_schema(
    caller, live_server, fitted, make_tenant, queued_nowhere, fuzz_settings, tmp_path
):
    if caller == "tenant":
        _, key = make_tenant(name="fuzzed", budget_usd=FUZZ_BUDGET_USD)
        headers = [f"Authorization: Bearer {key}"]
    else:
        headers = staff_session_headers()
    run = schemathesis_run(live_server.url, headers, tmp_path / "report.json")
    report = json.loads((tmp_path / "report.json").read_text())
    operations, cases = report["operations"], report["test_cases"]
    print(
        f"\nschemathesis as {caller}: {operations['tested']}/{operations['total']} operations, "
        f"{cases['generated']} test cases, {cases['with_failures']} with failures "
        f"({cases['unique_failures']} unique), {len(report['errors'])} errors, "
        f"{report['filtered']} refusals for what the database holds, {report['running_time']:.0f} s"
    )
    assert run["returncode"] == 0, failures_of(run["output"])
    assert operations["tested"] == operations["total"] == len(schema_operations(live_server.url))
    assert cases["generated"] >= 10 * operations["total"]
    assert (cases["with_failures"], report["errors"]) == (0, [])


def failures_of(output: str) -> str:
    """Schemathesis's account of each failure (its output starts with every operation it tested)."""
    start = output.find("FAILURES ===")
    return output[max(start - 40, 0) :] if start >= 0 else output[-8000:]


def schema_operations(url: str) -> list[tuple[str, str]]:
    import requests
    import yaml

    schema = yaml.safe_load(requests.get(f"{url}/api/schema/", timeout=30).text)
    return [(path, method) for path, item in schema["paths"].items() for method in item]
