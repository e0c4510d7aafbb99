"""The budget ledger on its own: reservations, overage and reconciliation against real rows.

The route API's budget behaviour (402s, pacing, feedback through HTTP) is in
``tests/routing/apis/test_budgets.py``; here each service is called directly.
"""

from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction

from registry.models import LLM
from routing.models import BudgetPeriod, Decision, Tenant
from routing.services import budgets
from routing.services.tenancy import tenant_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def tenant() -> Tenant:
    return tenant_create(name="ledger", budget_usd="1.00")


@pytest.fixture
def status(tenant):
    return budgets.budget_status_current(tenant=tenant)


def spend_of(status) -> tuple[Decimal, Decimal, int]:
    period = BudgetPeriod.objects.get(id=status.period_id)
    return period.spent_usd, period.overage_usd, period.requests


def decision_holding(status, *, reserved: str, overage: str = "0", reason=Decision.LambdaReason.EXPLICIT) -> Decision:
    """A decision that counts ``reserved`` in spend (and ``overage`` as overage), as route_create leaves it."""
    llm = LLM.objects.get_or_create(name="ledger-llm", defaults={"usd_per_mtok_in": 1.0, "usd_per_mtok_out": 1.0})[0]
    with transaction.atomic():
        if Decimal(reserved):
            assert budgets.reserve(status=status, amount=Decimal(reserved)) is not None
        if Decimal(overage):
            budgets.add_overage(status=status, amount=Decimal(overage))
        return Decision.objects.create(
            tenant_id=BudgetPeriod.objects.get(id=status.period_id).tenant_id,
            routed_text="q",
            prompt_tokens=10,
            llm=llm,
            state_version=1,
            strategy="zero",
            lambda_reason=reason,
            predicted_quality=0.5,
            estimated_cost_usd=Decimal(reserved) + Decimal(overage),
            budget_period_id=status.period_id,
            reserved_usd=Decimal(reserved),
            overage_usd=Decimal(overage),
        )


def reconcile(decision: Decision, cost: str) -> Decision:
    with transaction.atomic():
        budgets.reconcile(decision=decision, cost_usd=Decimal(cost))
        decision.save()
    return decision


def test_the_open_period_is_created_once_with_the_tenants_budget_as_its_limit(tenant):
    first = budgets.budget_period_current(tenant=tenant)
    again = budgets.budget_period_current(tenant=tenant)
    assert first.id == again.id and BudgetPeriod.objects.filter(tenant=tenant).count() == 1
    assert first.limit_usd == Decimal("1.00") and first.spent_usd == 0


def test_a_reservation_that_fits_adds_to_spend_and_counts_the_request(status):
    with transaction.atomic():
        reserved = budgets.reserve(status=status, amount=Decimal("0.25"))
    assert reserved.spent_usd == Decimal("0.25") and reserved.remaining_usd == Decimal("0.75")
    assert spend_of(status) == (Decimal("0.25"), Decimal(0), 1)


def test_a_reservation_that_does_not_fit_changes_nothing(status):
    with transaction.atomic():
        assert budgets.reserve(status=status, amount=Decimal("0.90")) is not None
        assert budgets.reserve(status=status, amount=Decimal("0.20")) is None
    assert spend_of(status) == (Decimal("0.90"), Decimal(0), 1)


def test_the_database_refuses_spend_beyond_the_limit_even_without_the_guarded_update(status):
    with pytest.raises(IntegrityError), transaction.atomic():
        BudgetPeriod.objects.filter(id=status.period_id).update(spent_usd=Decimal("1.01"))


def test_amounts_are_rounded_up_so_spend_is_never_under_counted():
    assert budgets.usd(1e-11) == Decimal("1E-10")
    assert budgets.usd(0.12345678901) == Decimal("0.1234567891")


def test_reconciling_a_cheaper_call_gives_the_difference_back(status):
    decision = decision_holding(status, reserved="0.40")
    reconcile(decision, "0.10")
    assert spend_of(status)[:2] == (Decimal("0.10"), Decimal(0))
    assert (decision.reserved_usd, decision.overage_usd) == (Decimal("0.10"), Decimal(0))


def test_reconciling_a_dearer_call_takes_the_headroom_then_counts_the_rest_as_overage(status):
    decision = decision_holding(status, reserved="0.40")
    decision_holding(status, reserved="0.50")  # another request: 0.10 of headroom is left
    reconcile(decision, "0.75")
    assert spend_of(status)[:2] == (Decimal("1.00"), Decimal("0.25"))
    assert (decision.reserved_usd, decision.overage_usd) == (Decimal("0.50"), Decimal("0.25"))


def test_reconciling_twice_with_the_same_cost_changes_nothing(status):
    decision = decision_holding(status, reserved="0.40")
    reconcile(decision, "0.75")
    once = spend_of(status)
    reconcile(decision, "0.75")
    assert spend_of(status) == once == (Decimal("0.75"), Decimal(0), 1)


def test_a_decision_routed_after_the_budget_was_spent_stays_overage(status):
    decision_holding(status, reserved="1.00")
    late = decision_holding(status, reserved="0", overage="0.05", reason=Decision.LambdaReason.BUDGET_EXHAUSTED)
    reconcile(late, "0.08")
    assert spend_of(status)[:2] == (Decimal("1.00"), Decimal("0.08"))
    assert (late.reserved_usd, late.overage_usd) == (Decimal(0), Decimal("0.08"))


def test_a_rejection_is_counted_without_touching_spend(status):
    budgets.count_rejection(status=status)
    period = BudgetPeriod.objects.get(id=status.period_id)
    assert (period.rejected_requests, period.spent_usd, period.requests) == (1, 0, 0)


# --- the gateway's one-statement reconciliation gives reconcile()'s figures ------------------------


@pytest.mark.parametrize(
    ("reserved", "overage", "reason", "cost", "other_spend"),
    [
        ("0.30", "0", Decision.LambdaReason.EXPLICIT, "0.10", "0"),  # cheaper: the difference comes back
        ("0.30", "0", Decision.LambdaReason.EXPLICIT, "0.50", "0.40"),  # dearer: headroom first, then overage
        ("0.30", "0", Decision.LambdaReason.EXPLICIT, "2.00", "0.60"),  # no headroom left at all
        ("0", "0.20", Decision.LambdaReason.BUDGET_EXHAUSTED, "0.35", "0"),  # routed as overage: stays overage
    ],
)
def test_reconciling_a_pending_call_in_one_statement_matches_reconcile(
    tenant, reserved, overage, reason, cost, other_spend
):
    """Two tenants in the same situation: one reconciled by reconcile(), the other by the gateway's
    reconcile_pending(); periods and decisions must end equal."""
    twin = tenant_create(name="ledger-twin", budget_usd="1.00")
    results = []
    for owner, one_statement in ((tenant, False), (twin, True)):
        status = budgets.budget_status_current(tenant=owner)
        decision = decision_holding(status, reserved=reserved, overage=overage, reason=reason)
        Decision.objects.filter(id=decision.id).update(source=Decision.Source.GATEWAY, call_status="pending")
        if Decimal(other_spend):
            with transaction.atomic():
                assert budgets.reserve(status=status, amount=Decimal(other_spend)) is not None
        if one_statement:
            with transaction.atomic():
                fields = {"call_status": "ok", "actual_cost_usd": Decimal(cost)}
                assert budgets.reconcile_pending(decision_id=decision.id, cost_usd=Decimal(cost), fields=fields)
        else:
            reconcile(Decision.objects.get(id=decision.id), cost)
        decision.refresh_from_db()
        results.append((spend_of(status)[:2], decision.reserved_usd, decision.overage_usd))
    assert results[0] == results[1]
    period_spent, _ = results[1][0]
    assert period_spent <= Decimal("1.00")


def test_a_call_already_finished_is_not_reconciled_again(status):
    decision = decision_holding(status, reserved="0.30")
    Decision.objects.filter(id=decision.id).update(source=Decision.Source.GATEWAY, call_status="pending")
    fields = {"call_status": "ok", "actual_cost_usd": Decimal("0.10")}
    with transaction.atomic():
        assert budgets.reconcile_pending(decision_id=decision.id, cost_usd=Decimal("0.10"), fields=fields)
    before = spend_of(status)
    with transaction.atomic():
        assert not budgets.reconcile_pending(decision_id=decision.id, cost_usd=Decimal("0.90"), fields=fields)
    assert spend_of(status) == before and Decision.objects.get(id=decision.id).actual_cost_usd == Decimal("0.10")
