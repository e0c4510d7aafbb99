"""Per-tenant budget policies: small classes with one method, like DRF's throttles.

- what happens when the budget is spent (:class:`RejectWhenSpent`, :class:`CheapestWhenSpent`);
- how λ is paced when a request gives none (:class:`RecentRatePacing`, chosen by
  ``ROUTERHUB_PACING_POLICY``).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from datetime import datetime, timedelta

import numpy as np
from django.conf import settings
from django.utils import timezone
from django.utils.module_loading import import_string

from routing.caches import process_cache
from routing.models import Decision, Tenant
from routing.selection import lambda_for_budget
from routing.selectors.budgets import ADJECTIVE, BudgetStatus, refreshed
from routing.selectors.routers import ReferenceSample

# --- what happens when the budget is spent --------------------------------------------------------


class BudgetExhausted(Exception):
    """The tenant's budget for the period is spent (policy "reject")."""

    def __init__(self, status: BudgetStatus, cheapest_cost_usd: float | None = None) -> None:
        self.status = status
        self.cheapest_cost_usd = cheapest_cost_usd
        super().__init__(
            f"The {ADJECTIVE[status.period]} budget of tenant {status.tenant!r} is spent "
            f"({status.spent_usd.normalize():f} of {status.limit_usd.normalize():f} USD used"
            + (
                f"; the cheapest allowed LLM would cost {cheapest_cost_usd:.8f} USD"
                if cheapest_cost_usd is not None
                else ""
            )
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


class BudgetPacing(ABC):
    """Chooses λ for a request that names none (METHODS.md: the budget's Lagrange multiplier)."""

    @abstractmethod
    def lambda_for(
        self,
        *,
        tenant: Tenant,
        status: BudgetStatus,
        reference: ReferenceSample,
        allowed_mask: np.ndarray,
        now: datetime,
    ) -> float: ...


class RecentRatePacing(BudgetPacing):
    """Spend what is left evenly over what is left of the period, at the tenant's recent request rate.

    Per-request budget b = remaining USD / expected remaining requests, where the expected number is
    the rate of the last ``ROUTERHUB_PACING_WINDOW_SECONDS`` × the seconds left (at least one
    request, and at least ``ROUTERHUB_PACING_MIN_REQUESTS_PER_HOUR``, so a quiet tenant does not get
    λ = 0 and then spend its whole budget in its first burst). λ is the average-budget selector's
    multiplier for b on the reference sample.
    """

    def lambda_for(self, *, tenant, status, reference, allowed_mask, now):
        seconds_left = max((status.ends_at - now).total_seconds(), 1.0)
        expected_requests = max(1.0, self.requests_per_second(tenant=tenant, status=status, now=now) * seconds_left)
        per_request_budget = float(status.remaining_usd) / expected_requests
        return float(
            lambda_for_budget(reference.losses, reference.mean_costs, per_request_budget, allowed_mask=allowed_mask)
        )

    def requests_per_second(self, *, tenant, status, now) -> float:
        window = min(
            float(settings.ROUTERHUB_PACING_WINDOW_SECONDS), max((now - status.starts_at).total_seconds(), 1.0)
        )
        recent = Decision.objects.filter(tenant=tenant, created_at__gte=now - timedelta(seconds=window)).count()
        return max(recent / window, settings.ROUTERHUB_PACING_MIN_REQUESTS_PER_HOUR / 3600.0)


def pacing_policy() -> BudgetPacing:
    return import_string(settings.ROUTERHUB_PACING_POLICY)()


# tenant id → (computed at, key, λ)
_paced = process_cache("pacing lambdas")


def paced_lambda(
    *,
    tenant: Tenant,
    status: BudgetStatus,
    reference_key: tuple,
    reference: Callable[[], ReferenceSample],
    allowed_mask: np.ndarray,
) -> float:
    """The pacing λ of ``tenant``, recomputed at most every ``ROUTERHUB_PACING_REFRESH_SECONDS``
    (per process) rather than on every request: it needs a count query and a solve over the
    reference sample, and the spend rate it tracks does not change within seconds."""
    key = (reference_key, allowed_mask.tobytes())
    now_monotonic = time.monotonic()
    cached = _paced.get(tenant.id)
    if cached and cached[1] == key and now_monotonic - cached[0] < settings.ROUTERHUB_PACING_REFRESH_SECONDS:
        return cached[2]
    lam = pacing_policy().lambda_for(
        tenant=tenant,
        status=refreshed(status),
        reference=reference(),
        allowed_mask=allowed_mask,
        now=timezone.now(),
    )
    _paced.set(tenant.id, (now_monotonic, key, lam))
    return lam
