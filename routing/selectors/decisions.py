"""Reads of routing decisions."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from django.db.models import OuterRef, Q, Subquery

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


# --- the dashboard's decision list ---------------------------------------------------------------

PAGE_SIZE = 50
LIST_FIELDS = (
    "id",
    "created_at",
    "tenant__name",
    "llm__name",
    "predicted_quality",
    "estimated_cost_usd",
    "lambda_used",
    "lambda_reason",
    "cluster",
    "feedback_at",
    "quality_score",
    "reported_cost_usd",
)


class DecisionStatus:
    """What the list's "status" filter offers: where a decision stands after it was made."""

    AWAITING_FEEDBACK = "awaiting_feedback"
    WITH_FEEDBACK = "with_feedback"
    BUDGET_FALLBACK = "budget_fallback"
    CHOICES = (
        (AWAITING_FEEDBACK, "awaiting feedback"),
        (WITH_FEEDBACK, "feedback received"),
        (BUDGET_FALLBACK, "budget spent: cheapest LLM"),
    )


@dataclass(frozen=True)
class DecisionPage:
    decisions: list[Decision]
    next_cursor: str | None  # pass as ``before`` for the next (older) page


def decision_page(
    *,
    tenant: Tenant | None,
    llm_id: int | None = None,
    since: date | None = None,
    until: date | None = None,
    status: str | None = None,
    before: str | None = None,
    size: int = PAGE_SIZE,
) -> DecisionPage:
    """Newest first, filtered; pages by a keyset cursor ("created_at|id" of the last row shown), so a
    page costs the same on a million rows as on a hundred and no total is counted."""
    # Only what a list row shows: building fewer fields per model is most of a page's Python time.
    decisions = Decision.objects.select_related("tenant", "llm").only(*LIST_FIELDS)
    if tenant is not None:
        decisions = decisions.filter(tenant=tenant)
    if llm_id is not None:
        decisions = decisions.filter(llm_id=llm_id)
    if since is not None:
        decisions = decisions.filter(created_at__gte=datetime.combine(since, time.min, tzinfo=UTC))
    if until is not None:
        decisions = decisions.filter(created_at__lt=datetime.combine(until + timedelta(days=1), time.min, tzinfo=UTC))
    if status == DecisionStatus.AWAITING_FEEDBACK:
        decisions = decisions.filter(feedback_at__isnull=True)
    elif status == DecisionStatus.WITH_FEEDBACK:
        decisions = decisions.filter(feedback_at__isnull=False)
    elif status == DecisionStatus.BUDGET_FALLBACK:
        decisions = decisions.filter(lambda_reason=Decision.LambdaReason.BUDGET_EXHAUSTED)
    cursor = _parse_cursor(before)
    if cursor is not None:
        created_at, decision_id = cursor
        decisions = decisions.filter(Q(created_at__lt=created_at) | Q(created_at=created_at, id__lt=decision_id))
    rows = list(decisions.order_by("-created_at", "-id")[: size + 1])
    more = len(rows) > size
    rows = rows[:size]
    return DecisionPage(
        decisions=rows, next_cursor=f"{rows[-1].created_at.isoformat()}|{rows[-1].id}" if more and rows else None
    )


def _parse_cursor(cursor: str | None) -> tuple[datetime, uuid.UUID] | None:
    """A malformed cursor (edited by hand) means the first page, not an error page."""
    if not cursor:
        return None
    created_at, _, decision_id = cursor.partition("|")
    try:
        parsed = datetime.fromisoformat(created_at)
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)), uuid.UUID(decision_id)
    except ValueError:
        return None


@dataclass(frozen=True)
class TenantLambda:
    tenant: str
    lam: float | None  # the λ of its latest decision that had one
    reason: str | None  # why that λ (Decision.LambdaReason value)

    @property
    def reason_text(self) -> str:
        return Decision.LambdaReason(self.reason).label if self.reason else ""


def tenants_current_lambda(*, tenant: Tenant | None) -> list[TenantLambda]:
    """Each active tenant's current operating λ: that of its newest decision with a λ (one indexed
    lookup per tenant, through the (tenant, created_at) index)."""
    newest = Decision.objects.filter(tenant=OuterRef("pk"), lambda_used__isnull=False).order_by("-created_at")
    tenants = Tenant.objects.filter(is_active=True) if tenant is None else Tenant.objects.filter(id=tenant.id)
    rows = tenants.annotate(
        lam=Subquery(newest.values("lambda_used")[:1]), reason=Subquery(newest.values("lambda_reason")[:1])
    ).values_list("name", "lam", "reason")
    return [TenantLambda(tenant=name, lam=lam, reason=reason) for name, lam, reason in rows if lam is not None]
