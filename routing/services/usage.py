"""Writes of the daily usage roll-ups (``routing/models/usage.py`` says why they exist).

``usage_rollup_due`` is what the hourly beat task runs: it rolls up every closed UTC day that has
decisions and no complete roll-up yet, rolls the last ``ROLL_AGAIN_DAYS`` closed days up again (so
feedback that corrects a decision's cost within that time reaches the charts), and rolls today up
to the last full hour (so readers sum at most the current hour from the decisions table). All of it
is safe to run twice and side by side: one transaction-scoped advisory lock serialises roll-ups.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from django.db import connection, transaction
from django.utils import timezone

from routing.models import Decision, UsageDay, UsageRollup

# Feedback usually arrives within minutes of its decision; a week covers slow batch reporters.
ROLL_AGAIN_DAYS = 7
# Second key of the advisory lock ("RJ", "RU"): one roll-up at a time.
ADVISORY_LOCK = (0x524A, 0x5255)


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time.min, tzinfo=UTC)
    return start, start + timedelta(days=1)


def usage_rollup(*, day: date, through: datetime | None = None) -> int:
    """(Re)write the ``UsageDay`` rows of one UTC day from its decisions made before ``through``
    (default: the whole day); returns how many rows it wrote."""
    start, end = day_bounds(day)
    through = end if through is None else min(max(through, start), end)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", ADVISORY_LOCK)
        UsageDay.objects.filter(day=day).delete()
        cursor.execute(
            "INSERT INTO routing_usageday (day, tenant_id, llm_id, requests, spent_usd, predicted_quality_sum, fallbacks) "
            "SELECT %s, tenant_id, llm_id, count(*), sum(reserved_usd + overage_usd), sum(predicted_quality), "
            "count(*) FILTER (WHERE lambda_reason = %s) "
            "FROM routing_decision WHERE created_at >= %s AND created_at < %s GROUP BY tenant_id, llm_id",
            [day, Decision.LambdaReason.BUDGET_EXHAUSTED, start, through],
        )
        written = cursor.rowcount
        UsageRollup.objects.update_or_create(day=day, defaults={"through": through, "rolled_at": timezone.now()})
    return written


def usage_rollup_due(*, now: datetime | None = None) -> list[date]:
    """Roll up what needs it (see the module docstring); returns the days rolled up, today last."""
    now = (now or timezone.now()).astimezone(UTC)
    today = now.date()
    first = Decision.objects.order_by("created_at").values_list("created_at", flat=True).first()
    if first is None:
        return []
    complete = {
        day
        for day, through in UsageRollup.objects.filter(day__lt=today).values_list("day", "through")
        if through >= day_bounds(day)[1]
    }
    again_from = today - timedelta(days=ROLL_AGAIN_DAYS)
    day, due = first.astimezone(UTC).date(), []
    while day < today:
        if day not in complete or day >= again_from:
            due.append(day)
        day += timedelta(days=1)
    for day in due:
        usage_rollup(day=day)
    usage_rollup(day=today, through=now.replace(minute=0, second=0, microsecond=0))  # up to the last full hour
    return [*due, today]


def rejection_count(*, period_id: int, now: datetime | None = None) -> None:
    """Count one request refused with 402 for the period's tenant, on today's row (created on first use)."""
    day = (now or timezone.now()).astimezone(UTC).date()
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO routing_rejectionday (day, tenant_id, rejected) "
            "SELECT %s, tenant_id, 1 FROM routing_budgetperiod WHERE id = %s "
            "ON CONFLICT (day, tenant_id) DO UPDATE SET rejected = routing_rejectionday.rejected + 1",
            [day, period_id],
        )
