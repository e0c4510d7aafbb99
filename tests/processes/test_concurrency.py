"""Concurrent route requests against a live server never push recorded spend past the limit."""

import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
import requests
from django.db.models import Sum

from routing.models import BudgetPeriod, Decision, Tenant
from tests.fixtures.api import ROUTE, sample_prompts

CLIENTS = 60


def burst(url: str, key: str, prompts: list[str], **options) -> list[requests.Response]:
    """All requests released at once by a barrier, one thread (and connection) each."""
    start = threading.Barrier(len(prompts))

    def call(prompt):
        start.wait(timeout=30)
        return requests.post(
            url + ROUTE, json={"prompt": prompt, **options}, headers={"Authorization": f"Bearer {key}"}, timeout=60
        )

    with ThreadPoolExecutor(len(prompts)) as pool:
        return list(pool.map(call, prompts))


def books_balance(tenant: Tenant) -> BudgetPeriod:
    period = BudgetPeriod.objects.get(tenant=tenant)
    decisions = Decision.objects.filter(tenant=tenant)
    assert period.spent_usd <= period.limit_usd
    assert decisions.aggregate(total=Sum("reserved_usd"))["total"] == period.spent_usd
    assert (decisions.aggregate(total=Sum("overage_usd"))["total"] or Decimal(0)) == period.overage_usd
    assert decisions.count() == period.requests
    return period


@pytest.mark.django_db(transaction=True)
def test_budget_is_never_exceeded_by_concurrent_requests(live_server, make_tenant, fitted):
    # λ = 0 routes to the best (expensive) LLMs, so 60 requests want far more than the budget.
    tenant, key = make_tenant(name="racy", budget_usd="0.002")
    responses = burst(live_server.url, key, sample_prompts(CLIENTS), **{"lambda": 0})
    codes = [r.status_code for r in responses]
    assert set(codes) == {200, 402}, codes
    period = books_balance(tenant)
    accepted = [r.json() for r in responses if r.status_code == 200]
    assert len(accepted) == Decision.objects.filter(tenant=tenant).count()
    assert sum(Decimal(str(a["estimated_cost_usd"])) for a in accepted) == period.spent_usd
    assert period.rejected_requests == codes.count(402)
    # rejected only when nothing fits any more: what is left is below the cheapest LLM's price
    cheapest = min(a["estimated_cost_usd"] for a in accepted)
    assert float(period.limit_usd - period.spent_usd) < cheapest * 3
    assert all(r.json()["error"]["code"] == "budget_exhausted" for r in responses if r.status_code == 402)


@pytest.mark.django_db(transaction=True)
def test_cheapest_policy_under_concurrency_serves_everyone_and_keeps_spend_within_the_limit(
    live_server, make_tenant, fitted
):
    tenant, key = make_tenant(name="racy-cheap", budget_usd="0.001", when_budget_spent=Tenant.WhenSpent.CHEAPEST)
    responses = burst(live_server.url, key, sample_prompts(CLIENTS), **{"lambda": 0})
    assert {r.status_code for r in responses} == {200}
    period = books_balance(tenant)
    assert period.overage_usd > 0
    assert Decision.objects.filter(tenant=tenant, lambda_reason="budget_exhausted").count() > 0
