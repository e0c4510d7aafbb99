"""Reads of spend: a tenant's usage by day and by LLM (selectors)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from django.db.models import Avg, Count, F, Q, Sum
from django.db.models.functions import Coalesce, TruncDate

from routing.models import Decision, RejectionDay, Tenant, UsageDay, UsageRollup

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
    cost, including overage). ``spent_usd`` repeats the recorded spend for clients that read that name.
    """
    start = datetime.combine(since, time.min, tzinfo=UTC)
    end = datetime.combine(until, time.max, tzinfo=UTC)  # not the next midnight: there is none after 9999-12-31
    decisions = Decision.objects.filter(created_at__gte=start, created_at__lte=end)
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


# --- daily series for the dashboard (from the roll-ups, plus the days not rolled up yet) ----------


@dataclass
class UsageRow:
    """Sums over one group (a day, an LLM, a tenant …)."""

    requests: int = 0
    spent_usd: Decimal = ZERO
    predicted_quality_sum: float = 0.0
    fallbacks: int = 0

    @property
    def mean_predicted_quality(self) -> float | None:
        return self.predicted_quality_sum / self.requests if self.requests else None

    def add(self, requests, spent_usd, predicted_quality_sum, fallbacks) -> None:
        self.requests += int(requests or 0)
        self.spent_usd += spent_usd or ZERO
        self.predicted_quality_sum += float(predicted_quality_sum or 0.0)
        self.fallbacks += int(fallbacks or 0)


def days_between(since: date, until: date) -> list[date]:
    return [since + timedelta(days=i) for i in range((until - since).days + 1)]


def usage_grouped(
    *, by: tuple[str, ...], since: date, until: date, tenant: Tenant | None = None, llm_id: int | None = None
) -> dict[tuple, UsageRow]:
    """Requests, spend, predicted quality and budget fallbacks summed per group over UTC days
    ``since``..``until``; ``by`` names the group fields among ``day``, ``tenant_id`` and ``llm_id``.

    Two queries, both grouped by PostgreSQL: what the hourly roll-up covered comes from ``UsageDay``
    (a few rows per day); the rest — the current hour, and days the roll-up has not reached yet — from
    the decisions table through its ``created_at`` index.
    """
    through = dict(UsageRollup.objects.filter(day__gte=since, day__lte=until).values_list("day", "through"))
    rollups = UsageDay.objects.filter(day__gte=since, day__lte=until)
    decisions = Decision.objects.filter(_not_rolled_up(since, until, through))
    if tenant is not None:
        rollups, decisions = rollups.filter(tenant=tenant), decisions.filter(tenant=tenant)
    if llm_id is not None:
        rollups, decisions = rollups.filter(llm_id=llm_id), decisions.filter(llm_id=llm_id)
    summed = rollups.values(*by).annotate(
        n=Sum("requests"), usd=Sum("spent_usd"), quality=Sum("predicted_quality_sum"), fallbacks=Sum("fallbacks")
    )
    if "day" in by:
        decisions = decisions.annotate(day=TruncDate("created_at", tzinfo=UTC))
    live = decisions.values(*by).annotate(
        n=Count("id"),
        usd=Sum(F("reserved_usd") + F("overage_usd")),
        quality=Sum("predicted_quality"),
        fallbacks=Count("id", filter=Q(lambda_reason=Decision.LambdaReason.BUDGET_EXHAUSTED)),
    )
    groups: dict[tuple, UsageRow] = {}
    for row in [*summed.order_by(), *live.order_by()]:
        key = tuple(row[name] for name in by)
        groups.setdefault(key, UsageRow()).add(row["n"], row["usd"], row["quality"], row["fallbacks"])
    return groups


def _not_rolled_up(since: date, until: date, through: dict[date, datetime]) -> Q:
    """created_at in the parts of days ``since``..``until`` that no roll-up covers (each day after its
    ``through``), consecutive parts merged into one range; matches nothing when all is rolled up."""
    condition, run = Q(pk__in=[]), None
    for day in days_between(since, until):
        start = datetime.combine(day, time.min, tzinfo=UTC)
        end = start + timedelta(days=1)
        start = max(start, through.get(day, start))
        if start >= end:
            continue
        if run is not None and run[1] == start:
            run = (run[0], end)
            continue
        if run is not None:
            condition |= Q(created_at__gte=run[0], created_at__lt=run[1])
        run = (start, end)
    if run is not None:
        condition |= Q(created_at__gte=run[0], created_at__lt=run[1])
    return condition


def rejections_by_day(*, since: date, until: date, tenant: Tenant | None = None) -> dict[date, int]:
    """Route requests refused with 402 per UTC day."""
    rows = RejectionDay.objects.filter(day__gte=since, day__lte=until)
    if tenant is not None:
        rows = rows.filter(tenant=tenant)
    return dict(rows.values("day").annotate(n=Sum("rejected")).values_list("day", "n").order_by())
