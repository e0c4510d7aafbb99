"""Reads of routing decisions."""

from __future__ import annotations

from routing.exceptions import DecisionNotFound
from routing.models import Decision, Tenant


def decision_get(*, decision_id, tenant: Tenant | None) -> Decision:
    """A decision the caller may see: its own tenant's, or any for staff (``tenant=None``)."""
    decisions = Decision.objects.select_related("llm", "tenant", "budget_period")
    if tenant is not None:
        decisions = decisions.filter(tenant=tenant)
    decision = decisions.filter(id=decision_id).first()
    if decision is None:
        raise DecisionNotFound(f"No decision {decision_id} for this tenant.")
    return decision
