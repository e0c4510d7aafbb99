"""Feedback holds the tenant's budget row only for the ledger update, never while it embeds a prompt."""

from decimal import Decimal

import pytest
from django.db import OperationalError, connections, transaction

from registry.embedders import HashingEmbedder
from registry.models import LLM
from routing.models import Decision
from routing.services import budgets
from routing.services.feedback import Feedback, decision_feedback
from routing.services.tenancy import tenant_create

# Committed rows: a second connection must see them to try their locks.
pytestmark = pytest.mark.django_db(transaction=True)


def row_is_locked(period_id: int) -> bool:
    """Whether another transaction holds the budget period's row lock (tried from a second connection)."""
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT id FROM routing_budgetperiod WHERE id = %s FOR UPDATE NOWAIT", [period_id])
        return False
    except OperationalError:
        return True
    finally:
        other.close()


def test_the_embedding_of_a_feedbacks_prompt_is_computed_while_the_budget_row_is_free(monkeypatch):
    tenant = tenant_create(name="locks", budget_usd="1")
    status = budgets.budget_status_current(tenant=tenant)
    llm = LLM.objects.create(name="lock-llm", usd_per_mtok_in=1.0, usd_per_mtok_out=1.0)
    with transaction.atomic():
        budgets.reserve(status=status, amount=Decimal("0.01"))
        decision = Decision.objects.create(
            tenant=tenant,
            routed_text="A question no one has asked before: how many lock waits fit in one embedding?",
            prompt_tokens=20,
            llm=llm,
            state_version=1,
            strategy="zero",
            lambda_reason=Decision.LambdaReason.EXPLICIT,
            predicted_quality=0.5,
            estimated_cost_usd=Decimal("0.01"),
            budget_period_id=status.period_id,
            reserved_usd=Decimal("0.01"),
        )
    locked_while_embedding = []
    embed = HashingEmbedder.embed

    def embed_and_probe(self, texts, **kwargs):
        locked_while_embedding.append(row_is_locked(status.period_id))
        return embed(self, texts, **kwargs)

    monkeypatch.setattr(HashingEmbedder, "embed", embed_and_probe)
    # the probe itself can see a lock: inside the ledger update, the row is locked
    with transaction.atomic():
        budgets.locked(status)
        assert row_is_locked(status.period_id)
    result = decision_feedback(
        decision=decision, feedback=Feedback(quality_score=1.0, actual_cost_usd=Decimal("0.002"))
    )
    assert locked_while_embedding == [False]  # embedded once, with the row free
    assert result.decision.outcome.score == 1.0 and result.decision.reserved_usd == Decimal("0.002")
