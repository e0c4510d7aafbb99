"""Reads of budgets: UTC calendar periods and a tenant's budget status."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.conf import settings

from routing.models import BudgetPeriod, Tenant

ADJECTIVE = {Tenant.Period.DAY: "daily", Tenant.Period.WEEK: "weekly", Tenant.Period.MONTH: "monthly"}


def period_bounds(period: str, now: datetime) -> tuple[datetime, datetime]:
    """[start, end) of the UTC calendar day, week (from Monday) or month containing ``now``."""
    now = now.astimezone(UTC)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == Tenant.Period.DAY:
        return day, day + timedelta(days=1)
    if period == Tenant.Period.WEEK:
        start = day - timedelta(days=day.weekday())
        return start, start + timedelta(days=7)
    if period == Tenant.Period.MONTH:
        start = day.replace(day=1)
        end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
        return start, end
    raise ValueError(f"unknown budget period {period!r}")


@dataclass(frozen=True)
class BudgetStatus:
    tenant: str
    period: str
    period_id: int
    starts_at: datetime
    ends_at: datetime
    limit_usd: Decimal
    spent_usd: Decimal
    overage_usd: Decimal
    when_spent: str

    @property
    def remaining_usd(self) -> Decimal:
        return max(self.limit_usd - self.spent_usd, Decimal(0))

    @property
    def seconds(self) -> float:
        return (self.ends_at - self.starts_at).total_seconds()

    @property
    def smoothing_seconds(self) -> float:
        """τ of the period's smoothed request and spend rates (routing/pacing.py)."""
        return self.seconds * settings.ROUTERHUB_PACING_SMOOTHING

    def with_amounts(self, row) -> BudgetStatus:
        """This status with the amounts of a ``(limit_usd, spent_usd, overage_usd)`` row."""
        limit_usd, spent_usd, overage_usd = row
        return BudgetStatus(
            **{**self.__dict__, "limit_usd": limit_usd, "spent_usd": spent_usd, "overage_usd": overage_usd}
        )


def status_of(period: BudgetPeriod, tenant: Tenant) -> BudgetStatus:
    return BudgetStatus(
        tenant=tenant.name,
        period=period.period,
        period_id=period.id,
        starts_at=period.starts_at,
        ends_at=period.ends_at,
        limit_usd=period.limit_usd,
        spent_usd=period.spent_usd,
        overage_usd=period.overage_usd,
        when_spent=tenant.when_budget_spent,
    )


def refreshed(status: BudgetStatus) -> BudgetStatus:
    """``status`` with its period's current amounts."""
    row = BudgetPeriod.objects.filter(id=status.period_id).values_list("limit_usd", "spent_usd", "overage_usd").get()
    return status.with_amounts(row)


@dataclass(frozen=True)
class PeriodRates:
    """A period's smoothed rates as last updated (routing/pacing.py decays them to any later time)."""

    request_rate: float  # accepted requests per second
    spend_rate: float  # estimated USD per second
    rates_at: datetime | None


def pacing_state(status: BudgetStatus) -> tuple[BudgetStatus, PeriodRates]:
    """``status`` with its period's current amounts, and the period's smoothed rates (one query)."""
    row = (
        BudgetPeriod.objects.filter(id=status.period_id)
        .values_list("limit_usd", "spent_usd", "overage_usd", "request_rate", "spend_rate", "rates_at")
        .get()
    )
    return status.with_amounts(row[:3]), PeriodRates(*row[3:])
