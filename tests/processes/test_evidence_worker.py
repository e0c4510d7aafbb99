"""End to end with the real worker: a trusted tenant's feedback through the API, the beat task's
``routing.apply_evidence`` message run by ``celery -A routerhub worker``, and the route that follows."""

from __future__ import annotations

import time

import pytest

from registry.models import Prompt
from routing.caches import reset_all
from routing.models import EvidenceApplication, Tenant
from routing.services import tenancy
from routing.tasks import apply_evidence
from tests.fixtures.subjects import load_routing_data

pytestmark = pytest.mark.slow


def test_feedback_from_a_trusted_tenant_reroutes_once_the_worker_runs_the_periodic_task(worker, subjects_data, client):
    data = load_routing_data(subjects_data)
    tenant = Tenant.objects.create(name="trusted-co", budget_usd=100, trusted_for_learning=True)
    headers = {"HTTP_AUTHORIZATION": f"Bearer {tenancy.api_key_create(tenant=tenant).secret}"}
    maths = list(
        Prompt.objects.filter(prompt_set=data.prompt_set, category="math", split=Prompt.Split.TEST)
        .order_by("id")
        .values_list("text", flat=True)
    )

    def route(text) -> dict:
        response = client.post(
            "/api/v1/route", {"prompt": text, "lambda": 0}, content_type="application/json", **headers
        )
        assert response.status_code == 200, response.content[:2000]
        return response.json()

    assert route(maths[-1])["llm"]["name"] == "big-generalist"
    for text in maths[:20]:
        decision = route(text)["decision_id"]
        client.post(
            f"/api/v1/route/{decision}/feedback", {"quality_score": 0}, content_type="application/json", **headers
        )

    started = time.monotonic()
    apply_evidence.delay()  # what beat sends every 30 s
    deadline = started + 30
    while not EvidenceApplication.objects.exists():
        if time.monotonic() > deadline:
            pytest.fail(f"the worker applied no evidence in 30 s; log:\n{worker.log()[-4000:]}")
        time.sleep(0.05)
    print(f"\nevidence applied by the worker {time.monotonic() - started:.2f} s after the task was sent")
    reset_all()  # a web process rereads the state's revision at most a second later

    application = EvidenceApplication.objects.get()
    assert (application.llm.name, application.events, application.sources[0]["tenant"]) == (
        "big-generalist",
        20,
        "trusted-co",
    )
    assert route(maths[-1])["llm"]["name"] != "big-generalist"
