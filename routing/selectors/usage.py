"""Reads of spend: a tenant's usage by day and by LLM (selectors)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from django.db.models import Avg, Count, F, Sum
from django.db.models.functions import Coalesce, TruncDate

from routing.models import Decision, Tenant

ZERO = Decimal(0)


@dataclass(frozen=True)
class Usage:
    since: date
    until: date  # inclusive
    totals: dict
    by_day: list[dict]
    by_llm: list[dict]


def usage_summary(*, tenant: Tenant | None, since: date, until: date) -> Usage:
    """Requests and spend between two UTC dates (inclusive); ``tenant=None`` sums every tenant (staff).

    Three views of spend: *estimated* (what routing reserved for each decision), *reported* (the cost
    feedback stated, for the decisions whose feedback stated one) and *recorded* (what each decision
    counts in its budget now: the estimate, or the reported cost but never below its prompt tokens'
    cost, including overage). ``spent_usd`` is the recorded spend, under its earlier name.
    """
    start = datetime.combine(since, time.min, tzinfo=UTC)
    end = datetime.combine(until + timedelta(days=1), time.min, tzinfo=UTC)
    decisions = Decision.objects.filter(created_at__gte=start, created_at__lt=end)
    if tenant is not None:
        decisions = decisions.filter(tenant=tenant)
    spend = F("reserved_usd") + F("overage_usd")
    aggregates = {
        "requests": Count("id"),
        "spent_usd": Coalesce(Sum(spend), ZERO),
        "recorded_usd": Coalesce(Sum(spend), ZERO),
        "estimated_usd": Coalesce(Sum("estimated_cost_usd"), ZERO),
        "reported_usd": Coalesce(Sum("reported_cost_usd"), ZERO),
        "with_reported_cost": Count("reported_cost_usd"),
        "with_feedback": Count("feedback_at"),
        "mean_quality_score": Avg("quality_score"),
    }
    by_day = (
        decisions.annotate(day=TruncDate("created_at", tzinfo=UTC)).values("day").annotate(**aggregates).order_by("day")
    )
    by_llm = decisions.values(llm_name=F("llm__name")).annotate(**aggregates).order_by("-spent_usd", "llm_name")
    return Usage(
        since=since,
        until=until,
        totals=decisions.aggregate(**aggregates),
        by_day=list(by_day),
        by_llm=list(by_llm),
    )
