"""Budgets: UTC calendar periods, atomic reservations, and the per-tenant policies.

Never overspend: a decision's estimated cost is *reserved* by one conditional UPDATE
(``spent + cost <= limit``) in the transaction that writes the decision. PostgreSQL re-checks the
condition against the newest row version when two requests race (READ COMMITTED's re-evaluation of
an UPDATE's WHERE clause), so concurrent requests queue on the row and never push ``spent_usd`` past
``limit_usd`` — and the table's CHECK constraint would refuse it if code ever tried. Feedback later
replaces the estimate by the actual cost (:func:`reconcile`).

Policies are small classes with one method, like DRF's throttles:
- what happens when the budget is spent (:class:`RejectWhenSpent`, :class:`CheapestWhenSpent`);
- how λ is paced when a request gives none (:class:`RecentRatePacing`).
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from decimal import ROUND_CEILING, Decimal

import numpy as np
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.module_loading import import_string

from routing.models import BudgetPeriod, Decision, Tenant

USD_QUANTUM = Decimal("1e-10")  # BudgetPeriod's precision


def usd(amount: float | Decimal) -> Decimal:
    """An amount as a Decimal at the budget's precision, rounded *up* so spend is never under-counted."""
    return Decimal(str(amount)).quantize(USD_QUANTUM, rounding=ROUND_CEILING)


# --- periods --------------------------------------------------------------------------------------

def period_bounds(period: str, now: datetime) -> tuple[datetime, datetime]:
    """[start, end) of the UTC calendar day, week (from Monday) or month containing ``now``."""
    now = now.astimezone(dt_timezone.utc)
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


def budget_period_current(*, tenant: Tenant, now: datetime | None = None) -> BudgetPeriod:
    """The tenant's open budget period, created on first use with the tenant's budget as limit."""
    starts_at, ends_at = period_bounds(tenant.budget_period, now or timezone.now())
    period, _ = BudgetPeriod.objects.get_or_create(
        tenant=tenant, starts_at=starts_at, defaults={"ends_at": ends_at, "limit_usd": tenant.budget_usd},
    )
    return period


_open_periods: dict[tuple[int, str], tuple[datetime, datetime, int]] = {}
_open_periods_lock = threading.Lock()


def budget_status_current(*, tenant: Tenant) -> BudgetStatus:
    """The tenant's open period. Its id is cached per process until the period ends; the amounts
    are those of the request's own reservation (``reserve`` returns them), so they are not read here
    and may be stale until then."""
    now = timezone.now()
    key = (tenant.id, tenant.budget_period)
    with _open_periods_lock:
        cached = _open_periods.get(key)
    if cached is None or not (cached[0] <= now < cached[1]):
        period = budget_period_current(tenant=tenant, now=now)
        cached = (period.starts_at, period.ends_at, period.id)
        with _open_periods_lock:
            _open_periods[key] = cached
    starts_at, ends_at, period_id = cached
    return BudgetStatus(
        tenant=tenant.name, period=tenant.budget_period, period_id=period_id, starts_at=starts_at, ends_at=ends_at,
        limit_usd=tenant.budget_usd, spent_usd=Decimal(0), overage_usd=Decimal(0), when_spent=tenant.when_budget_spent,
    )


def status_of(period: BudgetPeriod, tenant: Tenant) -> BudgetStatus:
    return BudgetStatus(
        tenant=tenant.name, period=tenant.budget_period, period_id=period.id, starts_at=period.starts_at,
        ends_at=period.ends_at, limit_usd=period.limit_usd, spent_usd=period.spent_usd,
        overage_usd=period.overage_usd, when_spent=tenant.when_budget_spent,
    )


# --- atomic reservation ---------------------------------------------------------------------------

def reserve(*, status: BudgetStatus, amount: Decimal) -> BudgetStatus | None:
    """Add ``amount`` to the period's spend if it still fits under the limit; the new status, or None.

    Must run inside the transaction that writes the decision, so a failed write releases it.
    """
    assert connection.in_atomic_block, "reserve() must run in the decision's transaction"
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE routing_budgetperiod SET spent_usd = spent_usd + %s, requests = requests + 1 "
            "WHERE id = %s AND spent_usd + %s <= limit_usd RETURNING limit_usd, spent_usd, overage_usd",
            [amount, status.period_id, amount],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    return _with_amounts(status, row)


def add_overage(*, status: BudgetStatus, amount: Decimal) -> BudgetStatus:
    """Count a request routed after the budget ran out (the "cheapest" policy) as overage."""
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE routing_budgetperiod SET overage_usd = overage_usd + %s, requests = requests + 1 "
            "WHERE id = %s RETURNING limit_usd, spent_usd, overage_usd",
            [amount, status.period_id],
        )
        return _with_amounts(status, cursor.fetchone())


def count_rejection(*, status: BudgetStatus) -> None:
    BudgetPeriod.objects.filter(id=status.period_id).update(rejected_requests=F("rejected_requests") + 1)


def locked(status: BudgetStatus) -> BudgetStatus:
    """The period's current amounts, its row locked until the transaction ends (SELECT … FOR UPDATE)."""
    assert connection.in_atomic_block
    row = BudgetPeriod.objects.select_for_update().filter(id=status.period_id).values_list("limit_usd", "spent_usd", "overage_usd").get()
    return _with_amounts(status, row)


def refreshed(status: BudgetStatus) -> BudgetStatus:
    row = BudgetPeriod.objects.filter(id=status.period_id).values_list("limit_usd", "spent_usd", "overage_usd").get()
    return _with_amounts(status, row)


def _with_amounts(status: BudgetStatus, row) -> BudgetStatus:
    limit_usd, spent_usd, overage_usd = row
    return BudgetStatus(**{**status.__dict__, "limit_usd": limit_usd, "spent_usd": spent_usd, "overage_usd": overage_usd})


def reconcile(*, decision: Decision, cost_usd: Decimal) -> None:
    """Replace what ``decision`` counts in its period by ``cost_usd`` (its actual cost).

    The part that fits under the limit (what the decision already holds plus the period's headroom)
    counts as spend; the rest — a call that cost more than estimated on an almost spent budget —
    counts as overage, so ``spent_usd`` still never exceeds ``limit_usd``. Running it again with the
    same cost changes nothing.
    """
    assert connection.in_atomic_block
    period = BudgetPeriod.objects.select_for_update().get(id=decision.budget_period_id)
    headroom = period.limit_usd - period.spent_usd
    within_limit = min(cost_usd, decision.reserved_usd + headroom)
    if decision.lambda_reason == Decision.LambdaReason.BUDGET_EXHAUSTED:
        within_limit = min(cost_usd, decision.reserved_usd)  # routed as overage: stays overage
    over = cost_usd - within_limit
    BudgetPeriod.objects.filter(id=period.id).update(
        spent_usd=F("spent_usd") + (within_limit - decision.reserved_usd),
        overage_usd=F("overage_usd") + (over - decision.overage_usd),
    )
    decision.reserved_usd, decision.overage_usd = within_limit, over


# --- what happens when the budget is spent --------------------------------------------------------

ADJECTIVE = {Tenant.Period.DAY: "daily", Tenant.Period.WEEK: "weekly", Tenant.Period.MONTH: "monthly"}


class BudgetExhausted(Exception):
    """The tenant's budget for the period is spent (policy "reject")."""

    def __init__(self, status: BudgetStatus, cheapest_cost_usd: float | None = None) -> None:
        self.status = status
        self.cheapest_cost_usd = cheapest_cost_usd
        super().__init__(
            f"The {ADJECTIVE[status.period]} budget of tenant {status.tenant!r} is spent "
            f"({status.spent_usd.normalize():f} of {status.limit_usd.normalize():f} USD used"
            + (f"; the cheapest allowed LLM would cost {cheapest_cost_usd:.8f} USD" if cheapest_cost_usd is not None else "")
            + f"). It resets at {status.ends_at.isoformat()}."
        )


class WhenBudgetSpent(ABC):
    """Picks the fallback when no candidate fits in what is left of the budget."""

    @abstractmethod
    def fallback(self, *, costs: np.ndarray, allowed_mask: np.ndarray, status: BudgetStatus) -> int:
        """Index of the LLM to route to anyway, or raise :class:`BudgetExhausted`."""


class RejectWhenSpent(WhenBudgetSpent):
    def fallback(self, *, costs, allowed_mask, status):
        cheapest = float(np.min(costs[allowed_mask])) if allowed_mask.any() else None
        raise BudgetExhausted(status, cheapest)


class CheapestWhenSpent(WhenBudgetSpent):
    def fallback(self, *, costs, allowed_mask, status):
        return int(np.flatnonzero(allowed_mask)[np.argmin(costs[allowed_mask])])


WHEN_SPENT_POLICIES: dict[str, type[WhenBudgetSpent]] = {
    Tenant.WhenSpent.REJECT: RejectWhenSpent,
    Tenant.WhenSpent.CHEAPEST: CheapestWhenSpent,
}


def when_spent_policy(tenant: Tenant) -> WhenBudgetSpent:
    return WHEN_SPENT_POLICIES[tenant.when_budget_spent]()


# --- budget pacing --------------------------------------------------------------------------------

@dataclass(frozen=True)
class ReferenceSample:
    """Predicted losses [n × llms] of a fixed prompt sample, and its mean cost per LLM [llms]."""

    losses: np.ndarray
    mean_costs: np.ndarray


class BudgetPacing(ABC):
    """Chooses λ for a request that names none (METHODS.md: the budget's Lagrange multiplier)."""

    @abstractmethod
    def lambda_for(self, *, tenant: Tenant, status: BudgetStatus, reference: ReferenceSample, allowed_mask: np.ndarray, now: datetime) -> float: ...


class RecentRatePacing(BudgetPacing):
    """Spend what is left evenly over what is left of the period, at the tenant's recent request rate.

    Per-request budget b = remaining USD / expected remaining requests, where the expected number is
    the rate of the last ``ROUTERHUB_PACING_WINDOW_SECONDS`` × the seconds left (at least one
    request, and at least ``ROUTERHUB_PACING_MIN_REQUESTS_PER_HOUR``, so a quiet tenant does not get
    λ = 0 and then spend its whole budget in its first burst). λ is the average-budget selector's
    multiplier for b on the reference sample.
    """

    def lambda_for(self, *, tenant, status, reference, allowed_mask, now):
        from routing.selection import lambda_for_budget

        seconds_left = max((status.ends_at - now).total_seconds(), 1.0)
        expected_requests = max(1.0, self.requests_per_second(tenant=tenant, status=status, now=now) * seconds_left)
        per_request_budget = float(status.remaining_usd) / expected_requests
        return float(lambda_for_budget(reference.losses, reference.mean_costs, per_request_budget, allowed_mask=allowed_mask))

    def requests_per_second(self, *, tenant, status, now) -> float:
        window = min(float(settings.ROUTERHUB_PACING_WINDOW_SECONDS), max((now - status.starts_at).total_seconds(), 1.0))
        recent = Decision.objects.filter(tenant=tenant, created_at__gte=now - timedelta(seconds=window)).count()
        return max(recent / window, settings.ROUTERHUB_PACING_MIN_REQUESTS_PER_HOUR / 3600.0)


def pacing_policy() -> BudgetPacing:
    return import_string(settings.ROUTERHUB_PACING_POLICY)()


_paced: dict[int, tuple[float, tuple, float]] = {}
_paced_lock = threading.Lock()


def paced_lambda(*, tenant: Tenant, status: BudgetStatus, reference_key: tuple, reference: Callable[[], ReferenceSample], allowed_mask: np.ndarray) -> float:
    """The pacing λ of ``tenant``, recomputed at most every ``ROUTERHUB_PACING_REFRESH_SECONDS``
    (per process) rather than on every request: it needs a count query and a solve over the
    reference sample, and the spend rate it tracks does not change within seconds."""
    key = (reference_key, allowed_mask.tobytes())
    now_monotonic = time.monotonic()
    with _paced_lock:
        cached = _paced.get(tenant.id)
    if cached and cached[1] == key and now_monotonic - cached[0] < settings.ROUTERHUB_PACING_REFRESH_SECONDS:
        return cached[2]
    lam = pacing_policy().lambda_for(
        tenant=tenant, status=refreshed(status), reference=reference(), allowed_mask=allowed_mask, now=timezone.now(),
    )
    with _paced_lock:
        _paced[tenant.id] = (now_monotonic, key, lam)
    return lam


def reset_caches() -> None:
    """Forget cached pacing λs (tests)."""
    with _paced_lock:
        _paced.clear()
    with _open_periods_lock:
        _open_periods.clear()
