"""Confidence intervals for the shares the dashboard shows (standard library only)."""

from __future__ import annotations

import math

Z_95 = 1.959963984540054  # the standard normal's 97.5th percentile: a two-sided 95% interval


def wilson(successes: int, trials: int, *, z: float = Z_95) -> tuple[float, float] | None:
    """The Wilson score interval of a binomial share ``successes / trials`` (None without trials).

    Unlike the normal approximation it stays inside [0, 1] and keeps its width at shares near 0 or 1
    and at small counts — the shadow evaluation's usual case (Wilson 1927; Brown, Cai & DasGupta 2001)."""
    if trials <= 0:
        return None
    share = successes / trials
    z2 = z * z
    centre = (share + z2 / (2 * trials)) / (1 + z2 / trials)
    half = z * math.sqrt(share * (1 - share) / trials + z2 / (4 * trials * trials)) / (1 + z2 / trials)
    return max(0.0, centre - half), min(1.0, centre + half)
