"""Changing a tenant's budget period kind starts a period of the new kind, with its own bounds."""

from datetime import UTC, datetime

import pytest

from routing.models import BudgetPeriod, Decision
from routing.services.tenancy import tenant_with_key
from tests.fixtures.api import ApiClient

pytestmark = pytest.mark.django_db


def switch(tenant, period: str) -> None:
    """What `create_api_key --tenant NAME --period P` does to an existing tenant."""
    tenant_with_key(name=tenant.name, budget_period=period)


def test_month_to_day_on_the_first_of_the_month_opens_a_day_not_the_month(make_tenant, fitted, clock):
    clock.set(datetime(2031, 3, 1, 10, 0, tzinfo=UTC))
    tenant, key = make_tenant(name="switcher", budget_usd="5")
    client = ApiClient(key)
    monthly = client.route(**{"lambda": 0}).json()
    assert monthly["budget"]["period"] == "month" and monthly["budget"]["period_ends_at"] == "2031-04-01T00:00:00Z"
    switch(tenant, "day")
    daily = client.route(**{"lambda": 0}).json()
    assert daily["budget"]["period"] == "day" and daily["budget"]["period_ends_at"] == "2031-03-02T00:00:00Z"
    # a fresh day: the month's spend stays in the month's row
    assert daily["budget"]["spent_usd"] == pytest.approx(daily["estimated_cost_usd"])
    rows = {p.period: p for p in BudgetPeriod.objects.filter(tenant=tenant)}
    assert set(rows) == {"month", "day"} and rows["month"].starts_at == rows["day"].starts_at
    assert Decision.objects.get(id=daily["decision_id"]).budget_period == rows["day"]
    clock.set(datetime(2031, 3, 2, 9, 0, tzinfo=UTC))
    assert client.route().json()["budget"]["period_ends_at"] == "2031-03-03T00:00:00Z"


def test_day_to_month_opens_the_month_with_its_end_ahead(make_tenant, fitted, clock):
    clock.set(datetime(2031, 3, 1, 10, 0, tzinfo=UTC))
    tenant, key = make_tenant(name="switcher", budget_usd="5", budget_period="day")
    client = ApiClient(key)
    assert client.route().json()["budget"]["period_ends_at"] == "2031-03-02T00:00:00Z"
    switch(tenant, "month")
    for day in (1, 5, 31):
        clock.set(datetime(2031, 3, day, 12, 0, tzinfo=UTC))
        body = client.route().json()
        assert body["budget"]["period"] == "month" and body["budget"]["period_ends_at"] == "2031-04-01T00:00:00Z"
        assert body["notes"] == [] and body["lambda_used"] == 0  # paced as a month, on track
    assert BudgetPeriod.objects.filter(tenant=tenant, period="month").count() == 1
    assert client.get("/api/v1/usage").json()["budget"]["period_ends_at"] == "2031-04-01T00:00:00Z"


def test_switching_back_finds_the_same_periods_again(make_tenant, fitted, clock):
    clock.set(datetime(2031, 3, 10, 10, 0, tzinfo=UTC))
    tenant, key = make_tenant(name="switcher", budget_usd="5")
    client = ApiClient(key)
    client.route(**{"lambda": 0})
    switch(tenant, "week")
    client.route(**{"lambda": 0})
    switch(tenant, "month")
    body = client.route(**{"lambda": 0}).json()
    assert body["budget"]["period"] == "month"
    month = BudgetPeriod.objects.get(tenant=tenant, period="month")
    assert month.requests == 2 and body["budget"]["spent_usd"] == pytest.approx(float(month.spent_usd))
    assert BudgetPeriod.objects.get(tenant=tenant, period="week").starts_at == datetime(2031, 3, 10, tzinfo=UTC)
