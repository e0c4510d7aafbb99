"""Deferral curves and the figures computed from them (METHODS.md, "Metrics routerhub reports").

A router with predicted losses γ(x, h) sends x to argmin_h γ(x, h) + λ·c(h). Sweeping λ from 0 to ∞
traces the *deferral curve*: the average normalised cost and average true quality of the routed
choices. The curve here is exact, not sampled on a λ grid: for each prompt the choice only changes
at the λ where the next cheaper LLM on the lower convex hull of its (cost, γ) points takes over, so
the curve's points are the prompts' breakpoints merged in order of λ (plus λ = 0 and λ = ∞).

Conventions, used for every method alike:
- cost is normalised by the most expensive LLM of the pool being routed, so it lies in [0, 1];
- before integrating, the curve is made monotone — quality at cost c is the best quality of any
  operating point costing at most c (running maximum) — and consecutive points are joined by
  straight lines, which randomising between two operating points achieves in expectation;
- **area** integrates that curve over normalised cost [0, 1]; the curve starts at its cheapest
  point and is flat on both sides of the points reached: left of the cheapest point it keeps that
  point's quality (the x-axis starts at 0 even though no router spends less than the cheapest LLM)
  and right of the most expensive point reached it keeps the best quality;
- **area50** integrates over [0, 0.5] and divides by 0.5, so it is an average quality like area;
- **QNC** is the smallest normalised cost at which the curve reaches the best single LLM's
  quality (inf if it never does);
- **oracle** routes with the true losses: each prompt goes to its cheapest correct LLM at λ → 0;
- **random** routing picks an LLM at random, independently of the prompt. Mixing two LLMs at
  random gives, in expectation, any point of the straight line between their (cost, accuracy)
  points, so the random-routing curve is the best such mixture at each cost: the upper concave
  hull of the single-LLM points (what ZeroRouter reaches when its accuracy estimates are exact).
Ties in γ + λ·c go to the cheaper LLM, then the lower index, as in ``routing.selection``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DeferralCurve:
    """Operating points, cost ascending: average normalised cost and average quality."""

    cost: np.ndarray
    quality: np.ndarray

    def monotone(self) -> DeferralCurve:
        order = np.lexsort((-self.quality, self.cost))
        return DeferralCurve(self.cost[order], np.maximum.accumulate(self.quality[order]))

    def thinned(self, max_points: int = 200) -> DeferralCurve:
        """At most ``max_points`` points of the monotone curve, for plots (ends kept)."""
        curve = self.monotone()
        if len(curve.cost) <= max_points:
            return curve
        keep = np.unique(np.linspace(0, len(curve.cost) - 1, max_points).round().astype(int))
        return DeferralCurve(curve.cost[keep], curve.quality[keep])


def normalised_costs(costs: np.ndarray) -> np.ndarray:
    costs = np.asarray(costs, dtype=np.float64)
    if costs.ndim != 1 or len(costs) == 0 or np.any(costs < 0) or costs.max() <= 0:
        raise ValueError("costs must be a non-empty vector of non-negative prices, not all zero")
    return costs / costs.max()


def deferral_curve(predicted_losses: np.ndarray, costs: np.ndarray, correctness: np.ndarray) -> DeferralCurve:
    """Exact λ-sweep curve of the rule argmin γ + λ·c, scored with the true ``correctness`` [n, m]."""
    predicted_losses = np.asarray(predicted_losses, dtype=np.float64)
    correctness = np.asarray(correctness, dtype=np.float64)
    if predicted_losses.shape != correctness.shape or predicted_losses.shape[1] != len(costs):
        raise ValueError("predicted_losses and correctness must both be [n_prompts, n_llms] with one cost per LLM")
    if np.isnan(correctness).any():
        raise ValueError("evaluate on prompts every routed LLM answered (correctness has NaN)")
    cost = normalised_costs(costs)
    by_price = np.lexsort((np.arange(len(cost)), cost))  # cheaper first, then lower index
    cost, losses, quality = cost[by_price], predicted_losses[:, by_price], correctness[:, by_price]

    n = len(losses)
    rows = np.arange(n)
    current = np.argmin(losses, axis=1)  # λ = 0; the first minimum is the cheapest tied LLM
    start_cost, start_quality = cost[current].mean(), quality[rows, current].mean()
    breakpoints, cost_steps, quality_steps = [], [], []
    cheaper = cost[None, :] < cost[:, None]  # cheaper[i, j]: LLM j costs strictly less than LLM i
    while True:
        candidates = cheaper[current]  # [n, m]
        active = candidates.any(axis=1)
        if not active.any():
            break
        with np.errstate(divide="ignore", invalid="ignore"):
            takeover = (losses - losses[rows, current][:, None]) / (cost[current][:, None] - cost[None, :])
        takeover = np.where(candidates, takeover, np.inf)
        following = np.argmin(takeover, axis=1)  # ties in λ go to the cheapest
        moving = rows[active]
        breakpoints.append(np.maximum(takeover[moving, following[moving]], 0.0))
        cost_steps.append(cost[following[moving]] - cost[current[moving]])
        quality_steps.append(quality[moving, following[moving]] - quality[moving, current[moving]])
        current = np.where(active, following, current)
    return _merge_breakpoints(start_cost, start_quality, n, breakpoints, cost_steps, quality_steps)


def _merge_breakpoints(start_cost, start_quality, n, breakpoints, cost_steps, quality_steps) -> DeferralCurve:
    if not breakpoints:
        return DeferralCurve(np.array([start_cost]), np.array([start_quality]))
    lam = np.concatenate(breakpoints)
    order = np.argsort(lam, kind="stable")
    lam = lam[order]
    costs = start_cost + np.cumsum(np.concatenate(cost_steps)[order]) / n
    qualities = start_quality + np.cumsum(np.concatenate(quality_steps)[order]) / n
    last_of_each_lambda = np.append(lam[1:] != lam[:-1], True)  # all prompts switching at one λ switch together
    cost = np.concatenate([[start_cost], costs[last_of_each_lambda]])[::-1]
    quality = np.concatenate([[start_quality], qualities[last_of_each_lambda]])[::-1]
    return DeferralCurve(cost, quality)


def oracle_curve(correctness: np.ndarray, costs: np.ndarray) -> DeferralCurve:
    """Routing with the true losses: at λ → 0 every prompt goes to its cheapest correct LLM."""
    correctness = np.asarray(correctness, dtype=np.float64)
    return deferral_curve(1.0 - correctness, costs, correctness)


def single_llm_points(correctness: np.ndarray, costs: np.ndarray) -> DeferralCurve:
    """One point per LLM (in the given order, not sorted): normalised cost and accuracy."""
    return DeferralCurve(normalised_costs(costs), np.asarray(correctness, dtype=np.float64).mean(axis=0))


def random_curve(correctness: np.ndarray, costs: np.ndarray) -> DeferralCurve:
    """Best prompt-independent random mixture of the LLMs: the upper concave hull of the single-LLM points."""
    points = single_llm_points(correctness, costs).monotone()
    hull: list[int] = []
    for i in range(len(points.cost)):  # monotone chain, keeping only right turns (concave from above)
        while len(hull) >= 2 and _turn(points, hull[-2], hull[-1], i) >= 0:
            hull.pop()
        hull.append(i)
    return DeferralCurve(points.cost[hull], points.quality[hull])


def _turn(points: DeferralCurve, a: int, b: int, c: int) -> float:
    """Cross product of (b − a) × (c − a): ≥ 0 when b lies on or below the line from a to c."""
    return float(
        (points.cost[b] - points.cost[a]) * (points.quality[c] - points.quality[a])
        - (points.quality[b] - points.quality[a]) * (points.cost[c] - points.cost[a])
    )


def area(curve: DeferralCurve, *, max_cost: float = 1.0) -> float:
    """Area under the monotone curve over normalised cost [0, max_cost] (see module docstring)."""
    monotone = curve.monotone()
    cost = np.clip(monotone.cost, 0.0, None)
    quality = monotone.quality
    inside = cost < max_cost
    grid = np.concatenate([[0.0], cost[inside], [max_cost]])
    values = np.interp(grid, cost, quality)  # np.interp is flat outside the points reached
    return float(np.sum((grid[1:] - grid[:-1]) * (values[1:] + values[:-1]) / 2.0))


def area50(curve: DeferralCurve) -> float:
    """Area over normalised cost [0, 0.5] divided by 0.5 — an average quality, comparable to area."""
    return area(curve, max_cost=0.5) / 0.5


def qnc(curve: DeferralCurve, target_quality: float) -> float:
    """Smallest normalised cost at which the monotone curve reaches ``target_quality`` (inf if never)."""
    monotone = curve.monotone()
    cost, quality = monotone.cost, monotone.quality
    reached = np.nonzero(quality >= target_quality - 1e-12)[0]
    if len(reached) == 0:
        return float("inf")
    i = reached[0]
    if i == 0:
        return float(cost[0])
    # The straight line from the previous point crosses the target part-way.
    share = (target_quality - quality[i - 1]) / (quality[i] - quality[i - 1])
    return float(cost[i - 1] + share * (cost[i] - cost[i - 1]))
