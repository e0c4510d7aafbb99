"""Reads of budgets: UTC calendar periods and a tenant's budget status."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from django.db.models import F

from routing import pacing
from routing.models import BudgetPeriod, Tenant
from routing.selectors.usage import usage_grouped

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
    def adjective(self) -> str:
        """ "daily", "weekly" or "monthly": the period in a sentence."""
        return ADJECTIVE[self.period]

    @property
    def seconds(self) -> float:
        return (self.ends_at - self.starts_at).total_seconds()

    @property
    def smoothing_seconds(self) -> float:
        """τ of the period's smoothed request and spend rates (routing/pacing.py)."""
        return self.seconds * pacing.SMOOTHING

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
    """``status`` with its period's current amounts; budget held in leases counts as spent (it is not
    available to this request)."""
    row = (
        BudgetPeriod.objects.filter(id=status.period_id)
        .values_list("limit_usd", F("spent_usd") + F("leased_usd"), "overage_usd")
        .get()
    )
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


# --- pacing, for the dashboard ----------------------------------------------------------------------

RATE_WINDOW = timedelta(hours=24)


@dataclass(frozen=True)
class BudgetPace:
    """A tenant's current period: spend so far, and where it ends if the last 24 hours' rate goes on."""

    tenant_id: int
    tenant: str
    period: str
    starts_at: datetime
    ends_at: datetime
    limit_usd: Decimal
    spent_usd: Decimal
    overage_usd: Decimal
    usd_per_day: Decimal  # spend of the last 24 hours (yesterday's share counted as even over its day)
    projected_usd: Decimal  # spent + rate × what is left of the period (may pass the limit)
    runs_out_at: datetime | None  # when the rate would reach the limit, if before the period ends
    cumulative: tuple[tuple[date, Decimal], ...]  # spend at the end of each day of the period so far

    @property
    def spent_share(self) -> float:
        return float(self.spent_usd / self.limit_usd) if self.limit_usd else 0.0

    @property
    def projected_share(self) -> float:
        return float(self.projected_usd / self.limit_usd) if self.limit_usd else 0.0


def budget_paces(*, tenant: Tenant | None, now: datetime) -> list[BudgetPace]:
    """Every active tenant's pace (or one tenant's), in name order: four queries, whatever the number
    of tenants."""
    tenants = list(Tenant.objects.filter(is_active=True) if tenant is None else Tenant.objects.filter(id=tenant.id))
    bounds = {t.id: period_bounds(t.budget_period, now) for t in tenants}
    kinds = {t.id: t.budget_period for t in tenants}
    periods = {
        p.tenant_id: p
        for p in BudgetPeriod.objects.filter(tenant__in=tenants, starts_at__lte=now, ends_at__gt=now)
        if (p.period, p.starts_at) == (kinds[p.tenant_id], bounds[p.tenant_id][0])
    }
    today = now.astimezone(UTC).date()
    earliest = min((start.date() for start, _ in bounds.values()), default=today)
    daily = usage_grouped(
        by=("tenant_id", "day"), since=min(earliest, today - timedelta(days=1)), until=today, tenant=tenant
    )
    # The last 24 hours: today so far, plus the part of yesterday still within 24 hours (its spend
    # taken as even over the day) — from the daily sums, without another pass over the decisions.
    share_of_yesterday = Decimal(
        str(1.0 - (now - datetime.combine(today, datetime.min.time(), tzinfo=UTC)) / RATE_WINDOW)
    )
    rates = {
        t.id: _spent(daily, t.id, today) + _spent(daily, t.id, today - timedelta(days=1)) * share_of_yesterday
        for t in tenants
    }
    paces = []
    for t in tenants:
        starts_at, ends_at = bounds[t.id]
        period = periods.get(t.id)
        limit = period.limit_usd if period else t.budget_usd
        spent = period.spent_usd if period else Decimal(0)
        overage = period.overage_usd if period else Decimal(0)
        rate = rates[t.id]
        days_left = Decimal(str(max((ends_at - now).total_seconds(), 0.0) / 86400))
        runs_out_at = None
        if rate > 0 and spent + rate * days_left > limit:
            runs_out_at = now + timedelta(days=float((limit - spent) / rate))
        total, cumulative = Decimal(0), []
        day = starts_at.date()
        while day <= today:
            total += _spent(daily, t.id, day)
            cumulative.append((day, total))
            day += timedelta(days=1)
        paces.append(
            BudgetPace(
                tenant_id=t.id,
                tenant=t.name,
                period=t.budget_period,
                starts_at=starts_at,
                ends_at=ends_at,
                limit_usd=limit,
                spent_usd=spent,
                overage_usd=overage,
                usd_per_day=rate,
                projected_usd=spent + rate * days_left,
                runs_out_at=runs_out_at,
                cumulative=tuple(cumulative),
            )
        )
    return paces


def _spent(daily: dict, tenant_id: int, day: date) -> Decimal:
    row = daily.get((tenant_id, day))
    return row.spent_usd if row else Decimal(0)
