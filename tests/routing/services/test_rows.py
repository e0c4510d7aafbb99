"""A reservation and its decision row written in one round trip (routing/services/rows.py), against real
rows outside any test transaction: what is committed, what is not, and a connection left usable."""

from decimal import Decimal

import pytest
from django.db import IntegrityError, connection
from psycopg import pq

from registry.models import LLM
from routing.models import BudgetPeriod, Decision
from routing.services import budgets
from routing.services.tenancy import tenant_create

pytestmark = pytest.mark.django_db(transaction=True)  # autocommit: the one-round-trip path, as in production


@pytest.fixture
def status():
    return budgets.budget_status_current(tenant=tenant_create(name="rows", budget_usd="1.00"))


def unsaved_decision(status, *, reserved: str, **fields) -> Decision:
    llm = LLM.objects.get_or_create(name="rows-llm", defaults={"usd_per_mtok_in": 1.0, "usd_per_mtok_out": 1.0})[0]
    values = {
        "tenant_id": BudgetPeriod.objects.get(id=status.period_id).tenant_id,
        "routed_text": "What is 2 + 2?",
        "prompt_tokens": 8,
        "llm": llm,
        "state_version": 0,
        "strategy": "direct",
        "lambda_reason": Decision.LambdaReason.DIRECT,
        "estimated_cost_usd": Decimal(reserved),
        "budget_period_id": status.period_id,
        "reserved_usd": Decimal(reserved),
        "request": {"max_tokens": 5},
        **fields,
    }
    return Decision(**values)


def test_a_fitting_reservation_commits_the_decision_with_every_field(status):
    decision = unsaved_decision(status, reserved="0.25", cluster=None, lambda_used=None)
    reserved = budgets.reserve_with_decision(
        status=status, amount=Decimal("0.25"), decision=decision, wait_for_disk=True
    )
    assert reserved.spent_usd == Decimal("0.25") and reserved.remaining_usd == Decimal("0.75")
    assert connection.connection.info.transaction_status == pq.TransactionStatus.IDLE  # committed, nothing open
    stored = Decision.objects.get(id=decision.id)
    assert (stored.routed_text, stored.prompt_tokens, stored.request) == ("What is 2 + 2?", 8, {"max_tokens": 5})
    assert stored.reserved_usd == Decimal("0.25") and stored.cluster is None and stored.alternatives == []
    assert stored.created_at == decision.created_at is not None
    period = BudgetPeriod.objects.get(id=status.period_id)
    assert (period.spent_usd, period.requests) == (Decimal("0.25"), 1)
    decision.quality_score = 1.0
    decision.save(update_fields=["quality_score"])  # a normal model instance afterwards
    assert Decision.objects.get(id=decision.id).quality_score == 1.0


def test_a_reservation_that_does_not_fit_writes_nothing(status):
    decision = unsaved_decision(status, reserved="1.50")
    assert (
        budgets.reserve_with_decision(status=status, amount=Decimal("1.50"), decision=decision, wait_for_disk=False)
        is None
    )
    assert not Decision.objects.exists()
    assert BudgetPeriod.objects.get(id=status.period_id).spent_usd == 0
    assert decision._state.adding  # still unsaved


def test_a_failing_write_rolls_back_and_leaves_the_connection_usable(status):
    decision = unsaved_decision(status, reserved="0.25", llm_id=999_999)  # no such LLM: the foreign key fails
    with pytest.raises(IntegrityError):
        budgets.reserve_with_decision(status=status, amount=Decimal("0.25"), decision=decision, wait_for_disk=True)
    assert connection.connection.info.transaction_status == pq.TransactionStatus.IDLE
    assert not Decision.objects.exists()
    assert BudgetPeriod.objects.get(id=status.period_id).spent_usd == 0  # the reservation went with it
