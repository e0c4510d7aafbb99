"""Cost-aware selection of one LLM per prompt from predicted losses (METHODS.md, "The optimal rule",
and Routoo's "Cost-aware selector").

The rule is argmin_h γ(x, h) + λ·c(h); an average-cost budget is met by choosing λ (the Lagrange
multiplier) on a reference sample. Hard filters (an allow / deny mask, a per-request cost cap) are
applied first. Ties go to the cheaper LLM, then to the lower index, so the choice is deterministic.
"""

from __future__ import annotations

import numpy as np


class NoCandidateError(ValueError):
    """The filters (allowed LLMs, cost cap) leave no LLM to route to."""


def candidate_mask(n_prompts: int, costs: np.ndarray, *, allowed_mask=None, max_cost=None) -> np.ndarray:
    """Boolean [n_prompts, n_llms]: LLMs that pass the allow mask ([m] or [n, m]) and the cost cap (scalar or [n])."""
    mask = np.ones((n_prompts, len(costs)), dtype=bool)
    if allowed_mask is not None:
        mask &= np.broadcast_to(np.asarray(allowed_mask, dtype=bool), mask.shape)
    if max_cost is not None:
        mask &= costs[None, :] <= np.reshape(np.asarray(max_cost, dtype=np.float64), (-1, 1))
    empty = ~mask.any(axis=1)
    if empty.any():
        raise NoCandidateError(
            f"no LLM passes the filters for {int(empty.sum())} of {n_prompts} prompts "
            "(check the allowed LLMs and the per-request cost cap)"
        )
    return mask


def select(
    losses: np.ndarray,
    costs: np.ndarray,
    *,
    lam: float = 0.0,
    allowed_mask=None,
    max_cost=None,
    quality_target: float | None = None,
) -> np.ndarray:
    """Index of the chosen LLM per prompt, for predicted losses [n, m] and per-query costs [m].

    Without ``quality_target``: argmin loss + λ·cost among the candidates. With ``quality_target``
    (λ is then ignored): the cheapest candidate whose predicted quality 1 − loss reaches the target,
    else the candidate with the best predicted quality.
    """
    losses = np.atleast_2d(np.asarray(losses, dtype=np.float64))
    costs = np.asarray(costs, dtype=np.float64)
    if losses.shape[1] != len(costs):
        raise ValueError(f"losses have {losses.shape[1]} LLMs but there are {len(costs)} costs")
    if lam < 0:
        raise ValueError(f"λ must be non-negative, got {lam}")
    mask = candidate_mask(len(losses), costs, allowed_mask=allowed_mask, max_cost=max_cost)
    by_price = np.lexsort((np.arange(len(costs)), costs))  # argmin's first hit is then the cheaper, lower-index LLM
    losses, mask = losses[:, by_price], mask[:, by_price]
    if quality_target is None:
        objective = np.where(mask, losses + lam * costs[by_price][None, :], np.inf)
        return by_price[np.argmin(objective, axis=1)]
    meets = mask & (1.0 - losses >= quality_target)
    cheapest_meeting = np.argmax(meets, axis=1)  # first True = cheapest
    best_quality = np.argmin(np.where(mask, losses, np.inf), axis=1)
    return by_price[np.where(meets.any(axis=1), cheapest_meeting, best_quality)]


def mean_cost(losses, costs, lam, *, allowed_mask=None, max_cost=None) -> float:
    choice = select(losses, costs, lam=lam, allowed_mask=allowed_mask, max_cost=max_cost)
    return float(np.asarray(costs, dtype=np.float64)[choice].mean())


def lambda_for_budget(
    losses_ref: np.ndarray,
    costs: np.ndarray,
    budget: float,
    *,
    allowed_mask=None,
    max_cost=None,
    tol: float = 1e-6,
    max_iter: int = 100,
) -> float:
    """Smallest λ whose routing of the reference prompts spends on average at most ``budget`` per query.

    Mean cost never increases with λ, so bisection finds it (to relative precision ``tol``). A budget
    at or above the spend at λ = 0 gives 0; a budget below the cheapest possible spend gives a λ
    large enough that every prompt goes to its cheapest candidate.
    """
    losses_ref = np.atleast_2d(np.asarray(losses_ref, dtype=np.float64))
    costs = np.asarray(costs, dtype=np.float64)
    spend = lambda lam: mean_cost(losses_ref, costs, lam, allowed_mask=allowed_mask, max_cost=max_cost)  # noqa: E731
    if spend(0.0) <= budget:
        return 0.0
    # Above this λ the cost term outweighs any loss difference: every prompt goes to its cheapest candidate.
    gaps = np.diff(np.unique(costs))
    loss_range = max(float(np.ptp(losses_ref)), 1.0)
    high = 2.0 * loss_range / gaps.min() if len(gaps) else 0.0
    if spend(high) > budget:
        return high
    low = 0.0
    for _ in range(max_iter):
        if high - low <= tol * high:
            break
        middle = (low + high) / 2.0
        if spend(middle) <= budget:
            high = middle
        else:
            low = middle
    return high
