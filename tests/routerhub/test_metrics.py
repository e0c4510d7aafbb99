"""/metrics: who may read it, the multiprocess exposition, Celery jobs, and the request log line with
its X-Request-Id (through the handler the web processes use for API-key calls)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.db import connections
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from routing import metrics
from tests.fixtures.api import ROUTE
from tests.fixtures.scrape import label_values, samples, total
from tests.routerhub.test_handlers import _through_the_handler

pytestmark = pytest.mark.django_db


@pytest.fixture
def live_database(transactional_db, monkeypatch):
    """Views run in the handler's own threads, which must see committed rows and close their connections."""
    monkeypatch.setitem(connections.settings["default"], "CONN_MAX_AGE", 0)


def _families(response) -> set[str]:
    return {family.name for family in text_string_to_metric_families(response.content.decode())}


def test_without_a_token_configured_metrics_are_for_staff_only(settings):
    settings.ROUTERHUB_METRICS_TOKEN = ""
    anonymous = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer anything")
    assert anonymous.status_code == 404 and anonymous.json()["error"]["code"] == "not_found"
    staff = Client()
    staff.force_login(get_user_model().objects.create_user("ops", password="pw-123456", is_staff=True))
    answer = staff.get("/metrics")
    assert answer.status_code == 200 and answer["Content-Type"].startswith("text/plain")
    assert {"routerhub_requests", "routerhub_stage_seconds", "routerhub_spend_usd"} <= _families(answer)
    plain_user = Client()
    plain_user.force_login(get_user_model().objects.create_user("viewer", password="pw-123456"))
    assert plain_user.get("/metrics").status_code == 404


def test_with_a_token_a_scraper_needs_exactly_that_token(settings):
    settings.ROUTERHUB_METRICS_TOKEN = "s3cret-scrape-token"
    missing = Client().get("/metrics")
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "not_authenticated"
    assert missing["WWW-Authenticate"].startswith("Bearer")
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-scrape-tokeN").status_code == 401
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Basic s3cret-scrape-token").status_code == 401
    assert Client().post("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-scrape-token").status_code == 405
    good = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-scrape-token")
    assert good.status_code == 200 and "routerhub_upstream_attempts" in _families(good)


_WRITER = """
import sys
from routing import metrics
for _ in range(int(sys.argv[1])):
    metrics.observe_request(endpoint="gateway:chat-completions", status=200, model="routerhub-auto",
                            stages={"auth": 2.0, "total": 10.0, "not-a-stage": 1.0})
metrics.observe_metered(tenant="acme", llm="gpt-4o", cost_usd=0.25, input_tokens=10, output_tokens=5)
metrics.observe_budget(tenant="acme", remaining_usd=float(sys.argv[1]), lam=0.5)
metrics.observe_embedding("memory")
"""


def test_the_exposition_adds_up_every_process_sharing_the_folder(tmp_path, settings):
    """Two processes (as two uvicorn workers would) write their values; a scrape sums both."""
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    for count in (3, 4):
        subprocess.run([sys.executable, "-c", _WRITER, str(count)], env=env, check=True, cwd=str(_project()))
    assert len(list(tmp_path.glob("*.db"))) >= 2  # one file per process
    settings.PROMETHEUS_MULTIPROC_DIR = str(tmp_path)
    scraped = samples(metrics.exposition().decode())
    labels = {"endpoint": "gateway:chat-completions", "status": "200", "model": "routerhub-auto"}
    assert total(scraped, "routerhub_requests_total", **labels) == 7
    assert total(scraped, "routerhub_stage_seconds_count", stage="total") == 7
    assert total(scraped, "routerhub_stage_seconds_sum", stage="auth") == pytest.approx(7 * 0.002)
    assert label_values(scraped, "routerhub_stage_seconds_count", "stage") == {"auth", "total"}
    assert total(scraped, "routerhub_spend_usd_total", tenant="acme", llm="gpt-4o") == pytest.approx(0.5)
    assert total(scraped, "routerhub_tokens_total", kind="input") == 20
    assert total(scraped, "routerhub_tokens_total", kind="output") == 10
    # A gauge shows the value the latest process set, not a sum over processes.
    assert total(scraped, "routerhub_budget_remaining_usd", tenant="acme") == 4
    assert total(scraped, "routerhub_lambda", tenant="acme") == 0.5
    assert total(scraped, "routerhub_embedding_cache_total", level="process") == 2


def _project():
    from pathlib import Path

    return Path(__file__).resolve().parents[2]


def test_celery_tasks_are_counted_by_kind_and_outcome(transactional_db):
    from routerhub.celery import app

    @app.task(name="routing.tasks.metrics_probe")
    def probe(fail: bool):
        if fail:
            raise ValueError("failed on purpose")
        return "done"

    def count(outcome):
        return total(
            samples(metrics.exposition().decode()), "routerhub_jobs_total", kind="metrics_probe", outcome=outcome
        )

    before_ok, before_failed = count("success"), count("failure")
    probe.apply(kwargs={"fail": False})
    probe.apply(kwargs={"fail": False})
    probe.apply(kwargs={"fail": True})
    assert count("success") - before_ok == 2
    assert count("failure") - before_failed == 1


def test_each_api_call_gets_a_request_id_and_one_json_log_line(live_database, tenant_and_key, fitted, caplog):
    tenant, key = tenant_and_key
    prompt = "A secret prompt about zebra migrations"
    caplog.set_level(logging.INFO, logger="routerhub.requests")
    response = _through_the_handler(
        "POST",
        ROUTE,
        json={"prompt": prompt},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 200, response.text
    request_id = response.headers["x-request-id"]
    assert len(request_id) == 32
    lines = [r.getMessage() for r in caplog.records if r.name == "routerhub.requests"]
    assert len(lines) == 1 and prompt not in lines[0] and key not in lines[0]
    line = json.loads(lines[0])
    assert line["request_id"] == request_id and line["status"] == 200 and line["method"] == "POST"
    assert line["route"] == "api:route" and line["tenant"] == tenant.name
    assert line["llm"] == response.json()["llm"]["name"] == response.headers["x-routerhub-model"]
    assert line["decision_id"] == response.json()["decision_id"]
    assert {"embed", "route", "budget", "app", "total"} <= set(line["stages_ms"])
    assert line["stages_ms"]["total"] >= line["stages_ms"]["app"] > 0


def test_a_clients_request_id_is_kept_when_it_is_a_plain_token(live_database, tenant_and_key, fitted, caplog):
    _, key = tenant_and_key
    caplog.set_level(logging.INFO, logger="routerhub.requests")
    kept = _through_the_handler(
        "GET", "/v1/models", headers={"Authorization": f"Bearer {key}", "X-Request-Id": "trace-42.a"}
    )
    assert kept.status_code == 200 and kept.headers["x-request-id"] == "trace-42.a"
    replaced = _through_the_handler(
        "GET", "/v1/models", headers={"Authorization": f"Bearer {key}", "X-Request-Id": 'x" injected'}
    )
    assert replaced.headers["x-request-id"] != 'x" injected' and len(replaced.headers["x-request-id"]) == 32
    ids = [json.loads(r.getMessage())["request_id"] for r in caplog.records if r.name == "routerhub.requests"]
    assert ids == ["trace-42.a", replaced.headers["x-request-id"]]


def test_rate_limit_refusals_are_counted(live_database, tenant_and_key, fitted, settings):
    _, key = tenant_and_key
    settings.ROUTERHUB_THROTTLE_API_KEY = "2/min"
    before = samples(metrics.exposition().decode())
    statuses = [
        _through_the_handler(
            "POST", ROUTE, json={"prompt": f"What is {i} + 1?"}, headers={"Authorization": f"Bearer {key}"}
        ).status_code
        for i in range(4)
    ]
    assert statuses == [200, 200, 429, 429]
    after = samples(metrics.exposition().decode())
    refused = total(after, "routerhub_rate_limited_total", endpoint="api:route")
    assert refused - total(before, "routerhub_rate_limited_total", endpoint="api:route") == 2
    answered = total(after, "routerhub_requests_total", endpoint="api:route", status="200")
    assert answered - total(before, "routerhub_requests_total", endpoint="api:route", status="200") == 2


def _scrape():
    return samples(metrics.exposition().decode())


def test_route_requests_count_embeddings_by_cache_level_and_set_the_tenants_budget(
    live_database, tenant_and_key, fitted
):
    tenant, key = tenant_and_key

    def route():
        response = _through_the_handler(
            "POST", ROUTE, json={"prompt": "How far do zebras migrate?"}, headers={"Authorization": f"Bearer {key}"}
        )
        assert response.status_code == 200, response.text
        return response.json()

    def levels():
        scraped = _scrape()
        return {
            level: total(scraped, "routerhub_embedding_cache_total", level=level)
            for level in metrics.EMBEDDING_LEVELS.values()
        }

    before = levels()
    route()
    first = levels()
    assert {level: first[level] - before[level] for level in first} == {"process": 0, "shared": 0, "miss": 1}
    answer = route()
    second = levels()
    assert {level: second[level] - first[level] for level in second} == {"process": 1, "shared": 0, "miss": 0}
    scraped = _scrape()
    assert total(scraped, "routerhub_budget_remaining_usd", tenant=tenant.name) == pytest.approx(
        float(answer["budget"]["remaining_usd"])
    )
    assert total(scraped, "routerhub_lambda", tenant=tenant.name) == pytest.approx(answer["lambda_used"])


def test_with_metrics_off_nothing_is_counted_and_metrics_is_not_found(live_database, tenant_and_key, fitted, settings):
    _, key = tenant_and_key
    before = _scrape()
    settings.ROUTERHUB_METRICS = False
    response = _through_the_handler(
        "POST", ROUTE, json={"prompt": "How far do geese fly?"}, headers={"Authorization": f"Bearer {key}"}
    )
    assert response.status_code == 200, response.text
    staff = Client()
    staff.force_login(get_user_model().objects.create_user("ops", password="pw-123456", is_staff=True))
    refused = staff.get("/metrics")
    assert refused.status_code == 404 and refused.json()["error"]["code"] == "not_found"
    settings.ROUTERHUB_METRICS = True
    after = _scrape()
    # Nothing the request would have counted moved: requests, stages, embeddings, budget gauges.
    for name in ("routerhub_requests_total", "routerhub_stage_seconds_count", "routerhub_embedding_cache_total"):
        assert total(after, name) == total(before, name), name
    assert label_values(after, "routerhub_budget_remaining_usd", "tenant") == label_values(
        before, "routerhub_budget_remaining_usd", "tenant"
    )


def test_budget_lease_grants_returns_and_sweeps_are_counted(transactional_db):
    from datetime import timedelta

    from django.utils import timezone

    from routing.models import BudgetLease
    from routing.services import budget_leases, budgets
    from routing.services.budget_leases import LeaseBook
    from routing.services.tenancy import tenant_create
    from routing.tasks import reclaim_budget_leases

    def count(event):
        return total(_scrape(), "routerhub_budget_leases_total", event=event)

    before = {event: count(event) for event in ("granted", "returned", "swept")}
    status = budgets.budget_status_current(tenant=tenant_create(name="leased", budget_usd="4.00"))
    returned, _ = LeaseBook().take(status=status, amount=Decimal("0.01"))
    stopped, _ = LeaseBook().take(status=status, amount=Decimal("0.01"))
    budget_leases.return_lease(returned)
    BudgetLease.objects.filter(holder=stopped.holder).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert reclaim_budget_leases.apply().result == {"swept": 1}
    after = {event: count(event) for event in before}
    assert {event: after[event] - before[event] for event in after} == {"granted": 2, "returned": 1, "swept": 1}
    jobs = total(_scrape(), "routerhub_jobs_total", kind="reclaim_budget_leases", outcome="success")
    assert jobs >= 1


def test_an_embedding_read_from_the_shared_cache_is_counted_as_shared(settings, monkeypatch):
    from registry import embedding_store
    from registry.embedders import HashingEmbedder
    from routing.caches import reset_all
    from routing.services.embeddings import embed_cached

    settings.ROUTERHUB_SHARED_EMBEDDING_CACHE = "on"
    monkeypatch.setattr(embedding_store, "FLUSH_SECONDS", 3600)
    monkeypatch.setattr("routing.services.embeddings.get_embedder", HashingEmbedder)

    def levels():
        scraped = _scrape()
        return {
            level: total(scraped, "routerhub_embedding_cache_total", level=level)
            for level in ("process", "shared", "miss")
        }

    before = levels()
    embed_cached("What is the boiling point of water at sea level?", tenant_id=1)  # computed
    embed_cached("What is the boiling point of water at sea level?", tenant_id=1)  # this process's cache
    reset_all()  # what another process sees: nothing in its own memory
    assert embed_cached("What is the boiling point of water at sea level?", tenant_id=1)[1] == "shared"
    after = levels()
    assert {level: after[level] - before[level] for level in after} == {"process": 1, "shared": 1, "miss": 1}
