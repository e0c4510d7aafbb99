"""Budgets: reservation under the limit, the 'spent' policies, and feedback reconciliation (pacing: test_pacing.py)."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from registry.models import Outcome
from routing.models import BudgetPeriod, Decision, Tenant
from routing.selectors.budgets import period_bounds
from routing.selectors.routers import ReferenceSample
from routing.services import budgets
from routing.services.tenancy import tenant_budget_changed
from tests.fixtures.api import ROUTE, ApiClient, cheapest_llm, sample_prompts

pytestmark = pytest.mark.django_db

CHEAPEST = "gemini-1.5-flash-002"


@pytest.mark.parametrize(
    ("period", "now", "start", "end"),
    [
        (
            "day",
            datetime(2026, 3, 5, 17, 30, tzinfo=UTC),
            datetime(2026, 3, 5, tzinfo=UTC),
            datetime(2026, 3, 6, tzinfo=UTC),
        ),
        (
            "week",
            datetime(2026, 3, 5, 17, 30, tzinfo=UTC),
            datetime(2026, 3, 2, tzinfo=UTC),
            datetime(2026, 3, 9, tzinfo=UTC),
        ),
        (
            "month",
            datetime(2026, 12, 31, 23, 59, tzinfo=UTC),
            datetime(2026, 12, 1, tzinfo=UTC),
            datetime(2027, 1, 1, tzinfo=UTC),
        ),
        (
            "month",
            datetime(2026, 2, 1, 0, 0, tzinfo=UTC),
            datetime(2026, 2, 1, tzinfo=UTC),
            datetime(2026, 3, 1, tzinfo=UTC),
        ),
    ],
)
def test_budget_periods_are_utc_calendar_periods(period, now, start, end):
    assert period_bounds(period, now) == (start, end)


def period_of(tenant) -> BudgetPeriod:
    return BudgetPeriod.objects.get(tenant=tenant)


def test_spend_never_passes_the_limit_and_a_spent_budget_answers_402(make_tenant, fitted):
    tenant, key = make_tenant(name="small", budget_usd="0.003")
    client = ApiClient(key)
    answers = [client.route(prompt, **{"lambda": 0}) for prompt in sample_prompts(40)]
    codes = [a.status_code for a in answers]
    assert codes[0] == 200 and 402 in codes
    assert set(codes) == {200, 402}
    period = period_of(tenant)
    assert period.spent_usd <= period.limit_usd == Decimal("0.003")
    accepted = [a.json() for a in answers if a.status_code == 200]
    assert Decision.objects.filter(tenant=tenant).count() == len(accepted) == period.requests
    assert sum(Decimal(str(a["estimated_cost_usd"])) for a in accepted) == period.spent_usd
    assert period.rejected_requests == codes.count(402)
    # once the expensive choice no longer fits, cheaper LLMs that do fit are chosen and it says so
    assert any(a["notes"] and "of the budget was left" in a["notes"][0] for a in accepted)

    rejection = next(a for a in answers if a.status_code == 402)
    error = rejection.json()["error"]
    assert (
        error["code"] == "budget_exhausted"
        and "monthly budget of tenant 'small'" in error["message"]
        and "resets at" in error["message"]
    )
    assert error["budget"]["limit_usd"] == 0.003
    assert datetime.fromisoformat(error["budget"]["period_ends_at"]) == period.ends_at
    assert int(rejection["Retry-After"]) > 0


def test_cheapest_policy_routes_to_the_cheapest_allowed_llm_once_spent_and_says_so(make_tenant, fitted):
    tenant, key = make_tenant(name="frugal", budget_usd="0.001", when_budget_spent=Tenant.WhenSpent.CHEAPEST)
    client = ApiClient(key)
    answers = [client.route(prompt, **{"lambda": 0}) for prompt in sample_prompts(30)]
    assert {a.status_code for a in answers} == {200}
    spent = [a.json() for a in answers if a.json()["lambda_reason"] == "budget_exhausted"]
    assert spent, "the budget should run out within 30 requests"
    assert all(a["llm"]["name"] == cheapest_llm(a["input_tokens"]) for a in spent)
    assert all("routed to the cheapest allowed LLM" in a["notes"][-1] and a["lambda_used"] is None for a in spent)
    period = period_of(tenant)
    assert period.spent_usd <= period.limit_usd
    assert period.overage_usd == sum(Decimal(str(a["estimated_cost_usd"])) for a in spent)
    assert spent[-1]["budget"]["overage_usd"] == pytest.approx(float(period.overage_usd))
    assert Decision.objects.filter(tenant=tenant).count() == 30


def test_lowering_the_budget_carries_into_the_open_period_but_never_below_spend(make_tenant, fitted):
    tenant, key = make_tenant(budget_usd="10")
    spent = Decimal(str(ApiClient(key).route(**{"lambda": 0}).json()["estimated_cost_usd"]))
    tenant.budget_usd = Decimal("5")
    tenant.save()
    tenant_budget_changed(tenant=tenant)
    assert period_of(tenant).limit_usd == Decimal("5")
    tenant.budget_usd = Decimal("0")
    tenant.save()
    tenant_budget_changed(tenant=tenant)
    assert period_of(tenant).limit_usd == spent
    response = ApiClient(key).route()
    assert response.status_code == 402 and response.json()["error"]["budget"]["remaining_usd"] == 0


# --- feedback --------------------------------------------------------------------------------------


def feedback(client, decision_id, **fields):
    return client.post(f"{ROUTE}/{decision_id}/feedback", fields)


def test_feedback_replaces_the_estimate_by_the_actual_cost(api, fitted, tenant_and_key):
    tenant = tenant_and_key[0]
    body = api.route(**{"lambda": 0}).json()
    estimate = Decimal(str(body["estimated_cost_usd"]))
    assert period_of(tenant).spent_usd == estimate
    response = feedback(api, body["decision_id"], actual_cost_usd=0.0001, latency_ms=812.5, output_tokens=40)
    assert response.status_code == 200, response.content
    after = response.json()
    assert after["feedback"]["actual_cost_usd"] == 0.0001 and after["counted_usd"] == pytest.approx(0.0001)
    assert period_of(tenant).spent_usd == Decimal("0.0001")


def test_feedback_is_idempotent(api, fitted, tenant_and_key):
    tenant = tenant_and_key[0]
    body = api.route(**{"lambda": 0}).json()
    first = feedback(api, body["decision_id"], actual_cost_usd=0.0002, quality_score=1.0).json()
    snapshot = (period_of(tenant).spent_usd, period_of(tenant).overage_usd, Outcome.objects.count())
    second = feedback(api, body["decision_id"], actual_cost_usd=0.0002, quality_score=1.0).json()
    assert (period_of(tenant).spent_usd, period_of(tenant).overage_usd, Outcome.objects.count()) == snapshot
    assert first["counted_usd"] == second["counted_usd"] == pytest.approx(0.0002)


def test_feedback_with_tokens_only_recomputes_the_cost_from_prices(api, fitted, tenant_and_key):
    body = api.route(models=[CHEAPEST]).json()
    after = feedback(api, body["decision_id"], input_tokens=1000, output_tokens=1000).json()
    assert after["counted_usd"] == pytest.approx((0.075 * 1000 + 0.30 * 1000) / 1e6)
    assert period_of(tenant_and_key[0]).spent_usd == Decimal("0.000375")


def test_a_call_dearer_than_the_remaining_budget_counts_the_excess_as_overage(make_tenant, fitted):
    tenant, key = make_tenant(budget_usd="0.01")
    client = ApiClient(key)
    body = client.route(**{"lambda": 0}).json()
    after = feedback(client, body["decision_id"], actual_cost_usd=0.05).json()
    period = period_of(tenant)
    assert period.spent_usd == period.limit_usd == Decimal("0.01")
    assert period.overage_usd == Decimal("0.04")
    assert after["counted_usd"] == pytest.approx(0.05)
    # correcting it downwards gives the budget back
    feedback(client, body["decision_id"], actual_cost_usd=0.001)
    period.refresh_from_db()
    assert (period.spent_usd, period.overage_usd) == (Decimal("0.001"), Decimal("0"))


def test_quality_feedback_becomes_an_outcome_for_later_refits(api, fitted):
    body = api.route("Name the capital of Australia.").json()
    feedback(api, body["decision_id"], quality_score=0.0)
    outcome = Outcome.objects.get(source=Outcome.Source.FEEDBACK)
    assert (outcome.llm.name, outcome.score) == (body["llm"]["name"], 0.0)
    assert outcome.prompt.prompt_set.name == "feedback" and outcome.prompt.text.startswith("Name the capital")
    assert outcome.prompt.embedding is not None and outcome.prompt.split in {"train", "validation", "test"}
    feedback(api, body["decision_id"], quality_score=1.0)
    assert Outcome.objects.get(source=Outcome.Source.FEEDBACK).score == 1.0


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({}, "non_field_errors"),
        ({"quality_score": 1.5}, "quality_score"),
        ({"actual_cost_usd": -1}, "actual_cost_usd"),
        ({"output_tokens": "many"}, "output_tokens"),
        ({"latency_ms": -3}, "latency_ms"),
        ({"score": 1}, "score"),
    ],
)
def test_bad_feedback_is_a_400_and_changes_nothing(api, fitted, tenant_and_key, fields, field):
    body = api.route().json()
    before = period_of(tenant_and_key[0]).spent_usd
    response = feedback(api, body["decision_id"], **fields)
    assert response.status_code == 400 and field in response.json()["error"]["fields"]
    assert period_of(tenant_and_key[0]).spent_usd == before
    assert Decision.objects.get().feedback_at is None


def test_reservation_is_refused_by_the_database_beyond_the_limit(make_tenant, fitted):
    from django.db import transaction

    tenant, _ = make_tenant(budget_usd="1")
    status = budgets.budget_status_current(tenant=tenant)
    with transaction.atomic():
        assert budgets.reserve(status=status, amount=Decimal("0.6")) is not None
        assert budgets.reserve(status=status, amount=Decimal("0.6")) is None
        assert budgets.reserve(status=status, amount=Decimal("0.4")).remaining_usd == 0
    assert period_of(tenant).spent_usd == Decimal("1")


def test_reference_sample_is_what_pacing_sees(fitted):
    from routing.selectors.routers import reference_sample, router_for

    sample = reference_sample(router_for(strategy=None))
    assert isinstance(sample, ReferenceSample)
    assert sample.losses.shape == (len(fitted.validation_prompt_ids), 29) and sample.mean_costs.shape == (29,)
