"""Budget pacing (pure): is a tenant's spend on track, and if not, what to aim at per request.

Pacing answers one question for a request that names no λ: how much may it cost on average so that
the budget lasts the period? It must not overreact. A burst of test requests early in a month, with
a tiny share of the budget spent, is no reason to route to worse LLMs. So:

- **On track** — the spent share of the budget is at most the elapsed share of the period plus a
  margin (a share of what is left, so it closes as the period ends) — λ stays at its default.
- **Ahead of the pace** — the target cost per request moves from what routing would spend unpaced
  towards an even split of what is left (remaining USD / expected remaining requests), in
  proportion to how far spend is past the margin; one margin further, it is the even split.

Rates are exponentially smoothed (time constant τ, a share of the period) and corrected for the
part of the window not yet observed early in a period, so a burst weighs as its share of τ,
not as the rate of the last few minutes. ``routing/services/budget_policies.py`` loads the state
and turns the target into λ with the average-budget selector of ``routing/selection.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: How far (a share of the budget) spend may run ahead of the period's elapsed share before λ rises.
MARGIN = 0.05
#: Time constant of the smoothed request and spend rates, a share of the period (1 hour of a day).
SMOOTHING = 1 / 24
#: The least request rate assumed for the rest of the period (a quiet tenant's).
MIN_REQUESTS_PER_HOUR = 1.0
#: Validation prompts that stand in for the tenant's future traffic when λ is solved for.
REFERENCE_PROMPTS = 500

# PostgreSQL's exp() raises on underflow, and so the SQL twin of smoothed() caps its exponent here too.
MAX_DECAY_EXPONENT = 700.0


def smoothed(rate: float, *, seconds_since: float, tau: float) -> float:
    """An exponentially smoothed rate ``seconds_since`` seconds after it was last updated."""
    return rate * math.exp(-min(max(seconds_since, 0.0) / tau, MAX_DECAY_EXPONENT))


def smoothed_add(rate: float, *, seconds_since: float, amount: float, tau: float) -> float:
    """The smoothed rate after an event of ``amount`` (1 request, or its USD) ``seconds_since`` seconds
    after the last update. An event older than the last update (clocks of two processes) is decayed
    instead. ``routing/services/budgets.py`` runs the same formula in SQL, in the reservation."""
    late = min(max(-seconds_since, 0.0) / tau, MAX_DECAY_EXPONENT)
    return smoothed(rate, seconds_since=seconds_since, tau=tau) + amount * math.exp(-late) / tau


def unbiased(rate: float, *, observed_seconds: float, tau: float) -> float:
    """A smoothed rate corrected for a window observed for only ``observed_seconds``: a steady rate ρ
    observed for t seconds reads ρ·(1 − e^(−t/τ)), so early in a period the raw value is too low."""
    filled = -math.expm1(-max(observed_seconds, 1.0) / tau)
    return rate / filled


@dataclass(frozen=True)
class Pace:
    """Where a tenant's spend stands in its period, and how hard pacing must press (0 = not at all)."""

    limit_usd: float
    spent_usd: float
    elapsed_share: float
    seconds_left: float
    request_rate: float  # smoothed accepted requests per second (with the floor)
    spend_rate: float  # smoothed estimated USD per second
    allowance_share: float  # spent share allowed now: elapsed share + margin of what is left
    pressure: float  # 0 on track … 1 one margin past the allowance or more

    @property
    def spent_share(self) -> float:
        return self.spent_usd / self.limit_usd if self.limit_usd > 0 else 1.0

    @property
    def on_track(self) -> bool:
        return self.pressure == 0.0

    @property
    def remaining_usd(self) -> float:
        return max(self.limit_usd - self.spent_usd, 0.0)

    @property
    def projected_usd(self) -> float:
        """Spend at the end of the period if the smoothed spend rate held."""
        return self.spent_usd + self.spend_rate * self.seconds_left

    @property
    def expected_requests(self) -> float:
        return max(self.request_rate * self.seconds_left, 1.0)

    @property
    def even_cost_per_request(self) -> float:
        """What is left, split evenly over the requests expected in the rest of the period."""
        return self.remaining_usd / self.expected_requests

    def target_cost_per_request(self, unpaced_cost: float) -> float:
        """The mean cost per request to aim at, given what routing would spend per request unpaced."""
        if self.on_track or unpaced_cost <= self.even_cost_per_request:
            return unpaced_cost
        return unpaced_cost - self.pressure * (unpaced_cost - self.even_cost_per_request)


def pace(
    *,
    limit_usd: float,
    spent_usd: float,
    period_seconds: float,
    elapsed_seconds: float,
    request_rate: float,
    spend_rate: float,
    margin: float,
    min_request_rate: float = 0.0,
) -> Pace:
    """The tenant's :class:`Pace` from its period and its smoothed (and unbiased) rates."""
    elapsed_share = min(max(elapsed_seconds / period_seconds, 0.0), 1.0)
    spent_share = spent_usd / limit_usd if limit_usd > 0 else 1.0
    room = margin * (1.0 - elapsed_share)  # the margin closes as the period ends
    allowance = elapsed_share + room
    excess = spent_share - allowance
    pressure = 0.0 if excess <= 0 else (1.0 if room <= 0 else min(excess / room, 1.0))
    return Pace(
        limit_usd=limit_usd,
        spent_usd=spent_usd,
        elapsed_share=elapsed_share,
        seconds_left=max(period_seconds - elapsed_seconds, 1.0),
        request_rate=max(request_rate, min_request_rate),
        spend_rate=spend_rate,
        allowance_share=allowance,
        pressure=pressure,
    )
