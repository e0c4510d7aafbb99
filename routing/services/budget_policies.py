"""Per-tenant budget policies: small classes with one method, like DRF's throttles.

- what happens when the budget is spent (:class:`RejectWhenSpent`, :class:`CheapestWhenSpent`);
- how λ is paced when a request gives none (:class:`SmoothedRatePacing`; the arithmetic is
  ``routing/pacing.py``).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from django.utils import timezone

from routing import pacing
from routing.caches import process_cache
from routing.exceptions import BudgetExhausted
from routing.models import Tenant
from routing.selection import lambda_for_budget, mean_cost
from routing.selectors.budgets import BudgetStatus, PeriodRates, pacing_state
from routing.selectors.routers import ReferenceSample

# --- what happens when the budget is spent --------------------------------------------------------


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
class PacedLambda:
    lam: float
    note: str | None = None  # why λ is above its default, in words (for the answer's notes)


class BudgetPacing(ABC):
    """Chooses λ for a request that names none (METHODS.md: the budget's Lagrange multiplier)."""

    @abstractmethod
    def lambda_for(
        self,
        *,
        status: BudgetStatus,
        rates: PeriodRates,
        reference: ReferenceSample,
        candidates: np.ndarray,
        now: datetime,
    ) -> PacedLambda:
        """λ for a request whose candidates (allowed LLMs within its cost cap) are ``candidates``."""


class SmoothedRatePacing(BudgetPacing):
    """λ stays at its default (0) while spend is on track, and rises smoothly when it is not
    (``routing/pacing.py``): the target cost per request moves from what routing spends unpaced
    towards what is left split evenly over the requests expected at the smoothed rate; λ is the
    average-budget selector's multiplier for that target on the reference sample, over this
    request's own candidates, never above ``MAX_LAMBDA``.
    """

    def lambda_for(self, *, status, rates, reference, candidates, now):
        state = self.pace(status=status, rates=rates, now=now)
        if state.on_track:
            return PacedLambda(0.0)
        unpaced = mean_cost(reference.losses, reference.mean_costs, 0.0, allowed_mask=candidates)
        target = state.target_cost_per_request(unpaced)
        lam = lambda_for_budget(reference.losses, reference.mean_costs, target, allowed_mask=candidates)
        return PacedLambda(float(lam), pacing_note(status=status, state=state, lam=lam, target=target, unpaced=unpaced))

    def pace(self, *, status: BudgetStatus, rates: PeriodRates, now: datetime) -> pacing.Pace:
        tau = status.smoothing_seconds
        elapsed = (now - status.starts_at).total_seconds()
        since = (now - rates.rates_at).total_seconds() if rates.rates_at else 0.0

        def rate_now(rate: float) -> float:
            return pacing.unbiased(
                pacing.smoothed(rate, seconds_since=since, tau=tau), observed_seconds=elapsed, tau=tau
            )

        return pacing.pace(
            limit_usd=float(status.limit_usd),
            spent_usd=float(status.spent_usd),
            period_seconds=status.seconds,
            elapsed_seconds=elapsed,
            request_rate=rate_now(rates.request_rate),
            spend_rate=rate_now(rates.spend_rate),
            margin=pacing.MARGIN,
            min_request_rate=pacing.MIN_REQUESTS_PER_HOUR / 3600.0,
        )


def pacing_note(*, status: BudgetStatus, state: pacing.Pace, lam: float, target: float, unpaced: float) -> str:
    """Why pacing raised λ (or did not need to), in words a tenant can check against its usage."""
    budget = f"the {status.adjective} budget ({state.spent_usd:.6g} of {state.limit_usd:.6g} USD)"
    where = (
        f"{state.spent_share:.1%} of {budget} is spent with {state.elapsed_share:.1%} of the period gone "
        f"(on track up to {state.allowance_share:.1%})"
    )
    rate = (
        f"at the recent rate of {state.request_rate * 3600:.4g} requests/hour and {state.spend_rate * 3600:.4g} USD/hour "
        f"(smoothed over {_duration(status.smoothing_seconds)}), the period would end at {state.projected_usd:.4g} USD, "
        f"with {_duration(state.seconds_left)} left"
    )
    if lam <= 0 and unpaced <= target:
        return (
            f"Budget pacing: {where}; {rate}. This request's candidates already cost {unpaced:.4g} USD per request "
            f"on average, within the pace, so λ stays 0."
        )
    if lam <= 0:
        return (
            f"Budget pacing: {where}; {rate}. The pace calls for {target:.4g} USD per request, but no cost weight "
            "changes the choice among this request's candidates, so λ stays 0."
        )
    return (
        f"Budget pacing raised λ to {lam:.4g}: {where}; {rate}. Routing aims at {target:.4g} USD per request "
        f"instead of {unpaced:.4g} USD, choosing cheaper LLMs where the predicted loss allows."
    )


def _duration(seconds: float) -> str:
    minutes = int(seconds // 60)
    days, hours, minutes = minutes // 1440, minutes // 60 % 24, minutes % 60
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min" if minutes else f"{int(seconds)} s"


# How often each process recomputes a tenant's λ: it reads the period and solves over the reference
# sample, and the spend rate it tracks does not change within seconds.
PACING_REFRESH_SECONDS = 5.0
# (tenant id, reference key, candidates) → (computed at, PacedLambda)
_paced = process_cache("pacing lambdas", max_entries=10_000)


def paced_lambda(
    *,
    tenant: Tenant,
    status: BudgetStatus,
    reference_key: tuple,
    reference: Callable[[], ReferenceSample],
    candidates: np.ndarray,
) -> PacedLambda:
    """The pacing λ of ``tenant`` for a request with these candidates (its allowed LLMs within its cost
    cap), recomputed at most every :data:`PACING_REFRESH_SECONDS` (per process) rather than on
    every request."""
    key = (tenant.id, status.period_id, reference_key, candidates.tobytes())
    now_monotonic = time.monotonic()
    cached = _paced.get(key)
    if cached and now_monotonic - cached[0] < PACING_REFRESH_SECONDS:
        return cached[1]
    current, rates = pacing_state(status)
    paced = SmoothedRatePacing().lambda_for(
        status=current, rates=rates, reference=reference(), candidates=candidates, now=timezone.now()
    )
    _paced.set(key, (now_monotonic, paced))
    return paced
