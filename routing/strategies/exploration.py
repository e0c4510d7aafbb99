"""Exploration: Thompson sampling among a request's candidates (opt-in per tenant).

A strategy's predicted loss γ(x, h) is a posterior mean; how much evidence stands behind it differs
by LLM. An LLM profiled on 50 validation prompts, or on none near this prompt, may be much better
(or worse) here than its estimate says, and routing only ever to the argmin never finds out.
Thompson sampling draws each candidate's loss from its posterior and routes on the draw, so an
LLM is tried in proportion to the probability that it is the best choice:

    ℓ̃(x, h) ~ Beta(μ · c, (1 − μ) · c),   μ = γ(x, h),   c = n(x, h) + PRIOR_COUNT

where n(x, h) is the evidence h's profile holds near x (``RoutingStrategy.evidence_at``: its answered
validation prompts — and any evidence weights — in x's cluster(s)). The Beta has mean γ(x, h), so a
well-known LLM's draw stays close to its estimate and an uncertain one's spreads over [0, 1]. The
chosen LLM is then the usual argmin ℓ̃ + λ·cost (or the cheapest reaching the quality target) among
the same candidates: exploration changes which candidate is preferred, never which are allowed,
so the allow mask, the cost cap and the budget apply exactly as without it.

Only a share of requests explores (``share``, 0 = never); the others route on γ itself. Everything
random comes from the ``numpy.random.Generator`` the caller passes, so a seed makes it reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from routing.selection import select

# What an LLM without evidence near a prompt is given: a Beta of concentration 2 (the spread of a
# uniform prior, Beta(1, 1), when the estimate is 0.5).
PRIOR_COUNT = 2.0
# A Beta needs both parameters positive: an estimate of exactly 0 or 1 is drawn as if just inside.
MEAN_BOUND = 1e-3


def posterior_draw(losses: np.ndarray, evidence: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One draw per entry of Beta(μ·c, (1 − μ)·c), μ = ``losses`` and c = ``evidence`` + PRIOR_COUNT.

    An infinite or NaN evidence (nothing known about how certain the estimate is) keeps the estimate
    itself: such an LLM is never explored, only chosen when it is the best choice anyway. NaN losses
    stay NaN (the selector never picks them)."""
    losses = np.asarray(losses, dtype=np.float64)
    evidence = np.broadcast_to(np.asarray(evidence, dtype=np.float64), losses.shape)
    mean = np.clip(np.nan_to_num(losses, nan=0.5), MEAN_BOUND, 1 - MEAN_BOUND)
    known = np.isfinite(evidence)
    concentration = np.where(known, np.maximum(evidence, 0.0), 0.0) + PRIOR_COUNT
    drawn = rng.beta(mean * concentration, (1 - mean) * concentration)
    return np.where(known & ~np.isnan(losses), drawn, losses)


def exploring_rows(n_prompts: int, share: float, rng: np.random.Generator) -> np.ndarray:
    """Boolean [n_prompts]: which requests explore, each with probability ``share`` (0: none, 1: all)."""
    if not (np.isfinite(share) and 0.0 <= share <= 1.0):
        raise ValueError(f"the exploration share must lie in [0, 1], got {share}")
    if share == 0.0:
        return np.zeros(n_prompts, dtype=bool)
    return rng.random(n_prompts) < share


def explored_losses(
    losses: np.ndarray, evidence: np.ndarray, *, share: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(losses to route on [n, m], which rows explore [n]): rows that explore hold a posterior draw,
    the others the estimates unchanged."""
    losses = np.atleast_2d(np.asarray(losses, dtype=np.float64))
    explores = exploring_rows(len(losses), share, rng)
    routed = losses.copy()
    if explores.any():
        evidence = np.broadcast_to(np.asarray(evidence, dtype=np.float64), losses.shape)
        routed[explores] = posterior_draw(losses[explores], evidence[explores], rng)
    return routed, explores


@dataclass(frozen=True)
class ExploredChoice:
    """Per prompt: the LLM chosen, the one the estimates alone would choose, and whether they differ."""

    choice: np.ndarray  # [n] index of the chosen LLM
    exploiting: np.ndarray  # [n] index of the LLM argmin of the estimates would choose
    explored: np.ndarray  # [n] bool: the draw changed the choice


def select_exploring(
    losses: np.ndarray,
    evidence: np.ndarray,
    costs: np.ndarray,
    *,
    share: float,
    rng: np.random.Generator,
    lam: float = 0.0,
    allowed_mask=None,
    max_cost=None,
    quality_target: float | None = None,
) -> ExploredChoice:
    """``selection.select`` on Thompson-drawn losses for a ``share`` of the prompts (module docstring).

    Both choices go through the same filters: every choice is an allowed candidate within
    ``max_cost``, whatever was drawn."""
    routed, _ = explored_losses(losses, evidence, share=share, rng=rng)
    filters = dict(lam=lam, allowed_mask=allowed_mask, max_cost=max_cost, quality_target=quality_target)
    choice = select(routed, costs, **filters)
    exploiting = select(losses, costs, **filters)
    return ExploredChoice(choice=choice, exploiting=exploiting, explored=choice != exploiting)
