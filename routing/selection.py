"""Cost-aware selection of one LLM per prompt from predicted losses (METHODS.md, "The optimal rule",
and Routoo's "Cost-aware selector").

The rule is argmin_h γ(x, h) + λ·c(h); an average-cost budget is met by choosing λ (the Lagrange
multiplier) on a reference sample. Hard filters (an allow / deny mask, a per-request cost cap) are
applied first. Ties go to the cheaper LLM, then to the lower index, so the choice is deterministic.
Whatever the numbers — λ·cost overflowing to infinity, undefined (NaN) losses — the choice is always
one of the candidates that passed the filters.
"""

from __future__ import annotations

import numpy as np

# The largest λ (loss per USD) worth asking for. Budgets count USD to 1e-10 (routing/services/budgets.py);
# at λ = 1e10 that smallest countable cost difference already outweighs the whole [0, 1] range of a
# loss, so every larger λ routes exactly as this one does. The route API refuses larger values and
# pacing never goes above it.
MAX_LAMBDA = 1e10


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
    if not (np.isfinite(lam) and lam >= 0):
        raise ValueError(f"λ must be a finite non-negative number, got {lam}")
    mask = candidate_mask(len(losses), costs, allowed_mask=allowed_mask, max_cost=max_cost)
    by_price = np.lexsort((np.arange(len(costs)), costs))  # argmin's first hit is then the cheaper, lower-index LLM
    losses, mask, costs = losses[:, by_price], mask[:, by_price], costs[by_price]
    if quality_target is None:
        with np.errstate(over="ignore", invalid="ignore"):
            objective = losses + lam * costs[None, :]
        return by_price[_argmin_among(objective, mask, fallback=_cheapest_candidate(losses, costs, mask))]
    with np.errstate(invalid="ignore"):
        meets = mask & (1.0 - losses >= quality_target)
    cheapest_meeting = np.argmax(meets, axis=1)  # first True = cheapest
    best_quality = _argmin_among(losses, mask, fallback=np.argmax(mask, axis=1))
    return by_price[np.where(meets.any(axis=1), cheapest_meeting, best_quality)]


def _argmin_among(values: np.ndarray, mask: np.ndarray, *, fallback: np.ndarray) -> np.ndarray:
    """Per row, the column of the smallest value among the candidates (``mask``).

    A row whose candidates all score +inf or NaN (λ·cost overflowed, or a strategy returned NaN)
    has no meaningful minimum: it gets ``fallback`` — never a column outside ``mask``, which is
    what a plain argmin over an all-infinite row would return (its first column).
    """
    scores = np.where(mask & ~np.isnan(values), values, np.inf)
    best = np.argmin(scores, axis=1)
    undefined = scores[np.arange(len(scores)), best] == np.inf
    return np.where(undefined, fallback, best)


def _cheapest_candidate(losses: np.ndarray, costs: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per row, the cheapest candidate (columns are in price order), the lowest loss among equally
    cheap ones: what argmin loss + λ·cost tends to as λ grows without bound."""
    first = np.argmax(mask, axis=1)
    equally_cheap = mask & (costs[None, :] == costs[first][:, None])
    return _argmin_among(losses, equally_cheap, fallback=first)


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
    max_lambda: float = MAX_LAMBDA,
) -> float:
    """Smallest λ whose routing of the reference prompts spends on average at most ``budget`` per query.

    Mean cost never increases with λ, so bisection finds it (to relative precision ``tol``). A budget
    at or above the spend at λ = 0 gives 0; a budget below the cheapest possible spend gives a λ
    large enough that every prompt goes to its cheapest candidate, but never above ``max_lambda``.
    """
    losses_ref = np.atleast_2d(np.asarray(losses_ref, dtype=np.float64))
    costs = np.asarray(costs, dtype=np.float64)
    spend = lambda lam: mean_cost(losses_ref, costs, lam, allowed_mask=allowed_mask, max_cost=max_cost)  # noqa: E731
    if spend(0.0) <= budget:
        return 0.0
    # Above this λ the cost term outweighs any loss difference: every prompt goes to its cheapest
    # candidate. Never above max_lambda: cost differences that small are below what budgets count.
    candidates = candidate_mask(len(losses_ref), costs, allowed_mask=allowed_mask, max_cost=max_cost).any(axis=0)
    candidates &= np.isfinite(costs)
    gaps = np.diff(np.unique(costs[candidates]))
    loss_range = max(float(np.ptp(losses_ref)), 1.0)
    high = min(2.0 * loss_range / gaps.min(), max_lambda) if len(gaps) else 0.0
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
